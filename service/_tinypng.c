/* The plainest small PNGs read without Pillow (service/tiny_png.py says when and why).
 *
 * parse() accepts only a strict subset of PNG: 8-bit greyscale or RGB, not interlaced, at most
 * MAX_SIDE x MAX_SIDE and MAX_PIXELS pixels, every chunk's CRC right, chunks IHDR, IDAT..., IEND
 * in that order with nothing after, and no ancillary chunk except a few that cannot change the
 * pixels Pillow decodes. Anything else is None, and Pillow reads the file as before, with its
 * own answer or error. unfilter() undoes the five PNG row filters (PNG spec, section 9).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_SIDE 64
#define MAX_PIXELS (64 * 64)

static unsigned long crc_table[256];

static void make_crc_table(void) {
    for (unsigned long n = 0; n < 256; n++) {
        unsigned long c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320UL ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static unsigned long crc32_of(const unsigned char *bytes, Py_ssize_t length) {
    unsigned long c = 0xffffffffUL;
    for (Py_ssize_t i = 0; i < length; i++) c = crc_table[(c ^ bytes[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffUL;
}

static unsigned long big_endian(const unsigned char *p) {
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

/* Chunks that leave the decoded pixels as Pillow gives them (it applies no gamma or colour
 * profile, and reads orientation only from eXIf and text chunks, which are not here), at the
 * length the PNG spec gives them: Pillow refuses a truncated one. */
static int harmless(const unsigned char *type, unsigned long length) {
    static const struct { const char *name; unsigned long length; } chunks[] = {
        {"gAMA", 4}, {"cHRM", 32}, {"sRGB", 1}, {"pHYs", 9}, {"tIME", 7}};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++)
        if (memcmp(type, chunks[i].name, 4) == 0) return length == chunks[i].length;
    return 0;
}

/* (width, height, channels, the IDAT data joined) or None. */
static PyObject *parse(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len, at = 8, idat_bytes = 0;
    unsigned long width = 0, height = 0, channels = 0;
    int stage = 0;  /* 0: before IHDR, 1: after IHDR, 2: in the IDATs, 3: after them, 4: IEND seen */
    PyObject *result = Py_None;
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size < 8 || memcmp(data, signature, 8) != 0) goto done;
    /* First pass: check every chunk, and count the IDAT bytes. */
    while (stage < 4) {
        if (size - at < 12) goto done;
        unsigned long length = big_endian(data + at);
        const unsigned char *type = data + at + 4, *body = data + at + 8;
        if (length > (unsigned long)(size - at - 12)) goto done;
        if (crc32_of(type, (Py_ssize_t)length + 4) != big_endian(body + length)) goto done;
        if (memcmp(type, "IHDR", 4) == 0) {
            if (stage != 0 || length != 13) goto done;
            width = big_endian(body);
            height = big_endian(body + 4);
            int depth = body[8], colour = body[9];
            if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE || width * height > MAX_PIXELS)
                goto done;
            if (depth != 8 || (colour != 0 && colour != 2) || body[10] || body[11] || body[12]) goto done;
            channels = colour == 2 ? 3 : 1;
            stage = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (stage != 1 && stage != 2) goto done;
            idat_bytes += (Py_ssize_t)length;
            stage = 2;
        } else if (memcmp(type, "IEND", 4) == 0) {
            if (stage != 2 && stage != 3) goto done;
            stage = 4;
        } else {
            if (stage == 0 || !harmless(type, length)) goto done;
            if (stage == 2) stage = 3;
        }
        at += 12 + (Py_ssize_t)length;
    }
    if (at != size) goto done;  /* bytes after IEND */
    /* Second pass: join the IDAT data. */
    PyObject *idat = PyBytes_FromStringAndSize(NULL, idat_bytes);
    if (idat == NULL) {
        result = NULL;
        goto done;
    }
    char *out = PyBytes_AS_STRING(idat);
    for (at = 8; at < size;) {
        unsigned long length = big_endian(data + at);
        if (memcmp(data + at + 4, "IDAT", 4) == 0) {
            memcpy(out, data + at + 8, length);
            out += length;
        }
        at += 12 + (Py_ssize_t)length;
    }
    result = Py_BuildValue("kkkN", width, height, channels, idat);
done:
    PyBuffer_Release(&view);
    if (result == Py_None) Py_RETURN_NONE;
    return result;
}

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* The rows of `raw` (a filter byte, then width * channels bytes each) unfiltered, as one
 * bytearray of height * width * channels; None if a filter byte is not 0-4. */
static PyObject *unfilter(PyObject *module, PyObject *args) {
    Py_buffer raw;
    Py_ssize_t width, height, channels;
    if (!PyArg_ParseTuple(args, "y*nnn", &raw, &width, &height, &channels)) return NULL;
    PyObject *result = NULL;
    if (width < 1 || height < 1 || channels < 1 || width > MAX_SIDE || height > MAX_SIDE || channels > 4) {
        PyErr_SetString(PyExc_ValueError, "unfilter: size out of range");
        goto release;
    }
    Py_ssize_t stride = width * channels;
    if (raw.len != height * (stride + 1)) {
        PyErr_SetString(PyExc_ValueError, "unfilter: the data is not height rows of (1 + width * channels) bytes");
        goto release;
    }
    PyObject *pixels = PyByteArray_FromStringAndSize(NULL, height * stride);
    if (pixels == NULL) goto release;
    unsigned char *out = (unsigned char *)PyByteArray_AS_STRING(pixels);
    const unsigned char *in = raw.buf;
    for (Py_ssize_t row = 0; row < height; row++) {
        int filter = in[row * (stride + 1)];
        const unsigned char *line = in + row * (stride + 1) + 1;
        unsigned char *now = out + row * stride;
        const unsigned char *above = row ? now - stride : NULL;
        if (filter > 4) {
            Py_DECREF(pixels);
            result = Py_NewRef(Py_None);
            goto release;
        }
        /* The first row's "above" is all zeros, as is the byte left of each row's first pixel. */
        for (Py_ssize_t i = 0; i < stride; i++) {
            int left = i >= channels ? now[i - channels] : 0, up = above ? above[i] : 0;
            switch (filter) {
                case 0: now[i] = line[i]; break;
                case 1: now[i] = (unsigned char)(line[i] + left); break;
                case 2: now[i] = (unsigned char)(line[i] + up); break;
                case 3: now[i] = (unsigned char)(line[i] + (left + up) / 2); break;
                default: now[i] = (unsigned char)(line[i] + paeth(left, up, above && i >= channels ? above[i - channels] : 0));
            }
        }
    }
    result = pixels;
release:
    PyBuffer_Release(&raw);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O, "(width, height, channels, IDAT data) of a plain small PNG, else None"},
    {"unfilter", unfilter, METH_VARARGS, "undo the PNG row filters: (raw, width, height, channels) -> bytearray"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tinypng", "Plain small PNGs read without Pillow.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tinypng(void) {
    make_crc_table();
    return PyModule_Create(&module);
}
