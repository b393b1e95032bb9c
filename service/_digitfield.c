/* The digit procedure's per-pixel steps in C (service/preprocess.py and service/strokes.py say
 * what each is for; the procedure's choices stay there, in Python).
 *
 * Each function computes exactly what its numpy counterpart computes, to the bit: integer
 * histograms and sums, and the same IEEE double divisions and round-half-to-even. numpy spends
 * about a microsecond a call on a 28x28 digit, and the procedure makes some 40 calls;
 * tests/service/test_digitfield_native.py compares the two on thousands of images.
 *
 * Inputs are C-contiguous 2-D uint8 buffers (numpy arrays); arrays come back as
 * (bytearray, height, width), for np.frombuffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

typedef struct {
    Py_buffer view;
    const unsigned char *pixels;
    Py_ssize_t height, width;
} Gray;

static int gray_of(PyObject *object, Gray *gray) {
    if (PyObject_GetBuffer(object, &gray->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *format = gray->view.format;
    if (gray->view.ndim != 2 || gray->view.itemsize != 1 || format == NULL ||
        !(strcmp(format, "B") == 0 || strcmp(format, "=B") == 0 || strcmp(format, "<B") == 0)) {
        PyBuffer_Release(&gray->view);
        PyErr_SetString(PyExc_TypeError, "expected a C-contiguous 2-D uint8 array");
        return -1;
    }
    gray->pixels = gray->view.buf;
    gray->height = gray->view.shape[0];
    gray->width = gray->view.shape[1];
    return 0;
}

/* numpy's searchsorted(cumulative, value) on a 256-bin cumulative histogram (side "left"). */
static int first_reaching(const Py_ssize_t cumulative[256], Py_ssize_t value) {
    for (int level = 0; level < 256; level++)
        if (cumulative[level] >= value) return level;
    return 256;
}

static void cumulate(Py_ssize_t histogram[256]) {
    for (int level = 1; level < 256; level++) histogram[level] += histogram[level - 1];
}

/* The k-th smallest value (0-based) of what a histogram counts: np.partition(values, k)[k]. */
static int kth_smallest(const Py_ssize_t histogram[256], Py_ssize_t k) {
    Py_ssize_t seen = 0;
    for (int level = 0; level < 256; level++) {
        seen += histogram[level];
        if (seen > k) return level;
    }
    return 255;
}

static void count_block(const Gray *gray, Py_ssize_t row0, Py_ssize_t row1, Py_ssize_t col0,
                        Py_ssize_t col1, Py_ssize_t histogram[256], Py_ssize_t *counted) {
    for (Py_ssize_t row = row0; row < row1; row++)
        for (Py_ssize_t col = col0; col < col1; col++) {
            histogram[gray->pixels[row * gray->width + col]]++;
            (*counted)++;
        }
}

static Py_ssize_t clamp(Py_ssize_t value, Py_ssize_t low, Py_ssize_t high) {
    return value < low ? low : value > high ? high : value;
}

/* _Tones.of: (median, darkest, brightest) levels. */
static PyObject *tones(PyObject *module, PyObject *arg) {
    Gray gray;
    if (gray_of(arg, &gray) < 0) return NULL;
    Py_ssize_t cumulative[256] = {0};
    Py_ssize_t pixels = gray.height * gray.width;
    for (Py_ssize_t i = 0; i < pixels; i++) cumulative[gray.pixels[i]]++;
    PyBuffer_Release(&gray.view);
    cumulate(cumulative);
    Py_ssize_t few = pixels / 2000 > 4 ? pixels / 2000 : 4;
    return Py_BuildValue("iii", first_reaching(cumulative, pixels / 2 + 1), first_reaching(cumulative, few),
                         first_reaching(cumulative, pixels - few + 1));
}

/* _frame_level: the median of the outer band, with numpy's slicing of
 * gray[:band], gray[-band:], gray[band:-band, :band] and gray[band:-band, -band:]
 * (overlapping on images thinner than two bands, as there). */
static PyObject *frame_level(PyObject *module, PyObject *arg) {
    Gray gray;
    if (gray_of(arg, &gray) < 0) return NULL;
    Py_ssize_t h = gray.height, w = gray.width;
    Py_ssize_t shorter = h < w ? h : w;
    Py_ssize_t band = shorter / 14 > 1 ? shorter / 14 : 1;
    Py_ssize_t histogram[256] = {0}, counted = 0;
    Py_ssize_t inner0 = clamp(band, 0, h), inner1 = clamp(h - band, 0, h);
    count_block(&gray, 0, clamp(band, 0, h), 0, w, histogram, &counted);
    count_block(&gray, clamp(h - band, 0, h), h, 0, w, histogram, &counted);
    if (inner1 > inner0) {
        count_block(&gray, inner0, inner1, 0, clamp(band, 0, w), histogram, &counted);
        count_block(&gray, inner0, inner1, clamp(w - band, 0, w), w, histogram, &counted);
    }
    PyBuffer_Release(&gray.view);
    if (counted == 0) {
        PyErr_SetString(PyExc_ValueError, "an empty image has no frame");
        return NULL;
    }
    return PyLong_FromLong(kth_smallest(histogram, counted / 2));
}

static PyObject *array_result(PyObject *bytes, Py_ssize_t height, Py_ssize_t width) {
    if (bytes == NULL) return NULL;
    return Py_BuildValue("Nnn", bytes, height, width);
}

/* The ink (ink_levels[gray]) cropped to the box of the pixels that are surely ink
 * (sure_levels[gray] non-zero); None when there are none. */
static PyObject *ink_box(PyObject *module, PyObject *args) {
    PyObject *gray_object;
    Py_buffer ink_levels, sure_levels;
    if (!PyArg_ParseTuple(args, "Oy*y*", &gray_object, &ink_levels, &sure_levels)) return NULL;
    PyObject *result = NULL;
    Gray gray;
    if (ink_levels.len != 256 || sure_levels.len != 256) {
        PyErr_SetString(PyExc_ValueError, "the level tables must hold 256 bytes each");
        goto release_tables;
    }
    if (gray_of(gray_object, &gray) < 0) goto release_tables;
    const unsigned char *ink = ink_levels.buf, *sure = sure_levels.buf;
    Py_ssize_t h = gray.height, w = gray.width;
    Py_ssize_t top = h, bottom = -1, left = w, right = -1;
    for (Py_ssize_t row = 0; row < h; row++) {
        const unsigned char *line = gray.pixels + row * w;
        for (Py_ssize_t col = 0; col < w; col++)
            if (sure[line[col]]) {
                if (row < top) top = row;
                bottom = row;
                if (col < left) left = col;
                if (col > right) right = col;
            }
    }
    if (bottom < 0) {
        result = Py_NewRef(Py_None);
    } else {
        Py_ssize_t box_h = bottom - top + 1, box_w = right - left + 1;
        PyObject *bytes = PyByteArray_FromStringAndSize(NULL, box_h * box_w);
        if (bytes != NULL) {
            unsigned char *out = (unsigned char *)PyByteArray_AS_STRING(bytes);
            for (Py_ssize_t row = 0; row < box_h; row++) {
                const unsigned char *line = gray.pixels + (top + row) * w + left;
                for (Py_ssize_t col = 0; col < box_w; col++) out[row * box_w + col] = ink[line[col]];
            }
        }
        result = array_result(bytes, box_h, box_w);
    }
    PyBuffer_Release(&gray.view);
release_tables:
    PyBuffer_Release(&ink_levels);
    PyBuffer_Release(&sure_levels);
    return result;
}

/* strokes._strongest: the k-th largest level. */
static PyObject *kth_largest(PyObject *module, PyObject *args) {
    PyObject *gray_object;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "On", &gray_object, &k)) return NULL;
    Gray gray;
    if (gray_of(gray_object, &gray) < 0) return NULL;
    Py_ssize_t histogram[256] = {0}, pixels = gray.height * gray.width;
    for (Py_ssize_t i = 0; i < pixels; i++) histogram[gray.pixels[i]]++;
    PyBuffer_Release(&gray.view);
    if (k < 1 || k > pixels) {
        PyErr_SetString(PyExc_ValueError, "k must lie between 1 and the number of pixels");
        return NULL;
    }
    return PyLong_FromLong(kth_smallest(histogram, pixels - k));
}

/* strokes.stroke_width of an 8-bit box: 2 * ink / edge, the edge summed over a zero frame.
 * The sums are integers, as numpy's float32 sums are below 2**24 (None above: numpy's then). */
static PyObject *stroke_width(PyObject *module, PyObject *arg) {
    Gray gray;
    if (gray_of(arg, &gray) < 0) return NULL;
    Py_ssize_t h = gray.height, w = gray.width;
    long long ink = 0, edge = 0;
    for (Py_ssize_t row = 0; row < h; row++) {
        const unsigned char *line = gray.pixels + row * w;
        const unsigned char *above = row ? line - w : NULL;
        for (Py_ssize_t col = 0; col < w; col++) {
            int value = line[col];
            ink += value;
            edge += abs(value - (col ? line[col - 1] : 0));   /* from the left (or the frame) */
            edge += abs(value - (above ? above[col] : 0));    /* from above (or the frame) */
        }
        if (w) edge += line[w - 1];                          /* to the frame on the right */
    }
    if (h)
        for (Py_ssize_t col = 0; col < w; col++) edge += gray.pixels[(h - 1) * w + col];  /* below */
    PyBuffer_Release(&gray.view);
    if (ink >= (1LL << 24) || edge >= (1LL << 24)) Py_RETURN_NONE;
    return PyFloat_FromDouble(edge > 0 ? 2.0 * (double)ink / (double)edge : 0.0);
}

/* preprocess._centre_by_mass: the digit pasted into a height x width field, its centre of mass
 * at the centre (Python's round: half to even, as nearbyint in the default rounding mode). */
static PyObject *centre_by_mass(PyObject *module, PyObject *args) {
    PyObject *gray_object;
    Py_ssize_t height, width;
    if (!PyArg_ParseTuple(args, "Onn", &gray_object, &height, &width)) return NULL;
    if (height < 1 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "the field must be at least 1x1");
        return NULL;
    }
    Gray gray;
    if (gray_of(gray_object, &gray) < 0) return NULL;
    Py_ssize_t h = gray.height, w = gray.width;
    long long mass = 0, row_moment = 0, col_moment = 0;
    for (Py_ssize_t row = 0; row < h; row++)
        for (Py_ssize_t col = 0; col < w; col++) {
            long long value = gray.pixels[row * w + col];
            mass += value;
            row_moment += row * value;
            col_moment += col * value;
        }
    double cy = mass ? (double)row_moment / (double)mass : (double)(h - 1) / 2;
    double cx = mass ? (double)col_moment / (double)mass : (double)(w - 1) / 2;
    Py_ssize_t top = (Py_ssize_t)nearbyint((double)height / 2 - cy);
    Py_ssize_t left = (Py_ssize_t)nearbyint((double)width / 2 - cx);
    PyObject *bytes = PyByteArray_FromStringAndSize(NULL, height * width);
    if (bytes != NULL) {
        unsigned char *field = (unsigned char *)PyByteArray_AS_STRING(bytes);
        memset(field, 0, height * width);
        Py_ssize_t y0 = top > 0 ? top : 0, x0 = left > 0 ? left : 0;
        Py_ssize_t y1 = top + h < height ? top + h : height, x1 = left + w < width ? left + w : width;
        for (Py_ssize_t y = y0; y < y1; y++)
            if (x1 > x0) memcpy(field + y * width + x0, gray.pixels + (y - top) * w + (x0 - left), x1 - x0);
    }
    PyBuffer_Release(&gray.view);
    return array_result(bytes, height, width);
}

static PyMethodDef methods[] = {
    {"tones", tones, METH_O, "(median, darkest, brightest) levels of a uint8 image: preprocess._Tones.of"},
    {"frame_level", frame_level, METH_O, "median level of the outer band: preprocess._frame_level"},
    {"ink_box", ink_box, METH_VARARGS, "(ink, sure) level tables applied, cropped to the sure ink's box"},
    {"kth_largest", kth_largest, METH_VARARGS, "the k-th largest level: strokes._strongest"},
    {"stroke_width", stroke_width, METH_O, "mean stroke width of an 8-bit box: strokes.stroke_width"},
    {"centre_by_mass", centre_by_mass, METH_VARARGS, "paste centred by mass: preprocess._centre_by_mass"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_digitfield",
                                    "The digit procedure's per-pixel steps, in C.", -1, methods};

PyMODINIT_FUNC PyInit__digitfield(void) { return PyModule_Create(&module); }
