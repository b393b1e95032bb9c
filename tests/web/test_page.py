"""The page at `/`, driven in real headless Chromium against the real service and starter models.

Digits are drawn stroke by stroke with mouse (and finger) events; real CIFAR-10 test images
are uploaded as PNG files, picked, dropped and chosen by keyboard; files the service refuses
must bring its error message onto the page. Every page view must load nothing but this
server's own files and raise no script error (browsing.open_page checks both).
Screenshots: test-artifacts/web/.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from browsing import DESKTOP, DIGIT_MODELS, PHOTO_MODEL, Visit, open_page
from PIL import Image

from testkit.fixture_images import cifar_test, encode, ink_on_paper, mnist_test
from testkit.handwriting import DIGITS, draw_with_mouse, draw_with_touch, render_like_the_page
from testkit.live_server import Server, running_server

try:
    from playwright.sync_api import expect
except ImportError as err:  # fail, and say how to fix it: these tests are never skipped
    raise ImportError("Playwright is not installed: `.venv/bin/pip install -e '.[dev]'`") from err

DRAWN = ("1", "7", "0", "4", "2", "3")
CIFAR_IMAGES = 4  # distinct classes, uploaded one after another
CLEAR_MARGIN = 0.01
LATENCY = re.compile(r"^\d+ ms round trip · server [\d.]+ ms \(inference [\d.]+ ms\) · (\S+) on \w+$")


def percent(fraction: float) -> str:
    """As the page writes a probability or an accuracy."""
    return "<0.1 %" if 0 < fraction < 0.001 else f"{fraction * 100:.1f} %"


def answer_of(visit: Visit, panel: str) -> dict:
    """What the panel's answer area shows, once the newest request has been answered."""
    area = visit.page.locator(f"#{panel}-result")
    expect(area).to_have_attribute("data-state", re.compile("^(done|error)$"))
    if area.get_attribute("data-state") == "error":
        return {"error": area.locator(".error").inner_text()}
    bars = area.locator(".bar")
    return {
        "label": area.locator(".answer-label").inner_text(),
        "probability": area.locator(".answer-probability").inner_text(),
        "bars": [(bar.locator(".bar-label").inner_text(), bar.locator(".bar-value").inner_text())
                 for bar in bars.all()],
        "latency": area.locator(".latency").inner_text(),
    }


def draw(visit: Visit, strokes, *, touch: bool = False) -> None:
    """Draw with the mouse (or a finger); each finished stroke must send one prediction request."""
    page = visit.page
    draw_stroke = draw_with_touch if touch else draw_with_mouse

    def predict_response(response) -> bool:
        return "/predict/" in response.url and response.request.method == "POST"

    for stroke in strokes:
        with page.expect_response(predict_response):
            draw_stroke(page, page.locator("#digit-canvas"), [stroke])


def shown_probabilities_descend(bars: list[tuple[str, str]]) -> bool:
    values = [0.0 if value == "<0.1 %" else float(value.removesuffix(" %")) for _, value in bars]
    return values == sorted(values, reverse=True)


def test_digits_drawn_stroke_by_stroke_are_read_right(desktop: Visit) -> None:
    """Each digit is drawn once, then every digit model reads the same drawing: changing the
    model sends the drawing again (drawing 10 digits for each of 5 models took 38 s)."""
    page = desktop.page
    for digit in DRAWN:
        page.select_option("#digit-model", DIGIT_MODELS[0])
        page.click("#digit-clear")
        expect(page.locator("#digit-result")).to_have_attribute("data-state", "idle")
        sent_before = len(desktop.predict_requests())
        draw(desktop, DIGITS[digit])
        assert len(desktop.predict_requests()) - sent_before == len(DIGITS[digit])  # one per stroke
        for index, model in enumerate(DIGIT_MODELS):
            if index:
                with page.expect_response(lambda response, m=model: f"/predict/{m}" in response.url):
                    page.select_option("#digit-model", model)
            shown = answer_of(desktop, "digit")
            desktop.screenshot(f"digit-{model}-{digit}")
            assert LATENCY.match(shown["latency"]).group(1) == model
            assert shown["label"] == digit, f"{model} read a drawn {digit} as {shown}"
            assert len(shown["bars"]) == 5 and shown["bars"][0][0] == digit
            assert shown["bars"][0][1] == shown["probability"]
            assert shown_probabilities_descend(shown["bars"])


def test_changing_the_model_sends_the_drawing_again(desktop: Visit) -> None:
    page = desktop.page
    first, second = DIGIT_MODELS[:2]
    page.select_option("#digit-model", first)
    draw(desktop, DIGITS["7"])
    assert LATENCY.match(answer_of(desktop, "digit")["latency"]).group(1) == first
    with page.expect_response(lambda response: f"/predict/{second}" in response.url):
        page.select_option("#digit-model", second)
    shown = answer_of(desktop, "digit")
    assert LATENCY.match(shown["latency"]).group(1) == second and shown["label"] == "7"


def test_a_digit_drawn_with_a_finger_on_a_phone(phone: Visit) -> None:
    page = phone.page
    page.select_option("#digit-model", DIGIT_MODELS[0])
    draw(phone, DIGITS["7"], touch=True)
    assert answer_of(phone, "digit")["label"] == "7"
    # The two panels stack and nothing is wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot("phone-digit-7")


@pytest.fixture(scope="module")
def cifar_pngs(web_server: Server) -> list[tuple[str, bytes]]:
    """(true class, PNG) for real CIFAR-10 test images of distinct classes that the photo model
    classifies right through the API: the page must then show exactly that class."""
    images, labels = cifar_test()
    with web_server.client() as http:
        classes = http.get(f"/models/{PHOTO_MODEL}").json()["classes"]
        chosen: dict[str, bytes] = {}
        for image, label in zip(images, labels):
            name, png = classes[label], encode(image)
            if name in chosen:
                continue
            top = http.post(f"/predict/{PHOTO_MODEL}", files={"file": ("x.png", png)},
                            params={"top_k": 2}).json()["top_k"]
            # Right, and by a clear margin: batching's float noise cannot reorder the top two.
            if top[0]["label"] == name and top[0]["probability"] - top[1]["probability"] > CLEAR_MARGIN:
                chosen[name] = png
            if len(chosen) == CIFAR_IMAGES:
                break
    assert len(chosen) == CIFAR_IMAGES, f"{PHOTO_MODEL} got fewer than {CIFAR_IMAGES} classes right"
    return list(chosen.items())


def test_cifar10_photos_picked_or_dropped_show_their_class(desktop: Visit, cifar_pngs) -> None:
    page = desktop.page
    page.select_option("#photo-model", PHOTO_MODEL)
    for number, (true_class, png) in enumerate(cifar_pngs):
        name = f"cifar10-test-{true_class}.png"
        with page.expect_response(lambda response: f"/predict/{PHOTO_MODEL}" in response.url):
            if number % 2:
                drop_file(page, "#photo-drop", name, png)
            else:
                page.set_input_files("#photo-input", files=[{"name": name, "mimeType": "image/png", "buffer": png}])
        shown = answer_of(desktop, "photo")
        desktop.screenshot(f"photo-{true_class}")
        assert shown["label"] == true_class, f"{name}: the page shows {shown}"
        assert len(shown["bars"]) == 5 and shown["bars"][0] == (true_class, shown["probability"])
        assert shown_probabilities_descend(shown["bars"])
        assert LATENCY.match(shown["latency"]).group(1) == PHOTO_MODEL
        # The preview is the very file that was sent: a 32x32 CIFAR-10 image.
        preview = page.locator("#photo-preview")
        expect(preview).to_be_visible()
        assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [32, 32]
        expect(page.locator("#photo-file")).to_contain_text(name)


def drop_file(page, target: str, name: str, data: bytes) -> None:
    """A real drop event carrying a real File, as dragging one from the desktop delivers it."""
    transfer = page.evaluate_handle(
        """([name, base64]) => {
            const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""", [name, base64.b64encode(data).decode()])
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


@pytest.mark.parametrize(("name", "data", "code", "status"), [
    ("notes.txt", b"These are notes, not pixels.\n", "unsupported_image", 415),
    ("truncated.png", None, "corrupt_image", 422),
])
def test_a_file_the_service_refuses_shows_its_error(desktop: Visit, cifar_pngs, name, data, code, status) -> None:
    page = desktop.page
    data = data if data is not None else cifar_pngs[0][1][:200]  # a real PNG, cut short
    with httpx.Client(base_url=page.url.rstrip("/")) as http:
        expected = http.post(f"/predict/{PHOTO_MODEL}", files={"file": (name, data)}).json()
    assert expected["error"] == code
    page.select_option("#photo-model", PHOTO_MODEL)
    page.set_input_files("#photo-input", files=[{"name": name, "mimeType": "application/octet-stream",
                                                   "buffer": data}])
    shown = answer_of(desktop, "photo")
    desktop.screenshot(f"error-{code}")
    assert "error" in shown, f"the page shows an answer for {name}: {shown}"
    assert f"({code}, HTTP {status})" in shown["error"] and expected["detail"] in shown["error"]
    expect(page.get_by_role("alert")).to_contain_text(expected["detail"])
    expect(page.locator("#photo-result .bar")).to_have_count(0)  # no stale answer beside it
    expect(page.locator("#photo-result .seen")).to_have_count(0)


def test_the_pickers_show_every_model_with_dataset_and_accuracy(desktop: Visit, web_server: Server) -> None:
    with web_server.client() as http:
        models = http.get("/models").json()["models"]
    page = desktop.page
    kinds = {model["id"]: (model["preprocessing"] or {}).get("kind") for model in models}
    for model in (model for model in models if kinds[model["id"]]):
        option = page.locator(f"#{kinds[model['id']]}-model option[value='{model['id']}']")
        expect(option).to_have_text(re.compile(
            rf"^{re.escape(model['id'])} · {model['dataset']} · {re.escape(percent(model['test_accuracy']))}"))
        # Only a model that serves can be picked.
        expect(option).to_be_enabled() if model["status"] == "ready" else expect(option).to_be_disabled()
    # Digit models are offered for uploads too (a picture of a digit), never photo models for drawing.
    digit_ids = {model_id for model_id, kind in kinds.items() if kind == "digit"}
    assert set(page.locator("#digit-model option").evaluate_all("os => os.map(o => o.value)")) == digit_ids
    assert digit_ids <= set(page.locator("#photo-model option").evaluate_all("os => os.map(o => o.value)"))
    # The picked model's card is summarised beneath the picker.
    page.select_option("#digit-model", DIGIT_MODELS[0])
    card = next(m for m in models if m["id"] == DIGIT_MODELS[0])
    expect(page.locator("#digit-model-info")).to_contain_text(f"{card['test_accuracy'] * 100:.2f} % test accuracy")
    expect(page.locator("#digit-model-info")).to_contain_text(", ".join(card["classes"]))
    desktop.screenshot("models")


def test_the_page_works_by_keyboard(desktop: Visit, cifar_pngs) -> None:
    page = desktop.page
    # Listening early turns on Playwright's file-chooser interception well before the key press
    # (expect_file_chooser alone turns it on without waiting, and a busy machine loses the race).
    page.on("filechooser", lambda chooser: None)
    # Tab reaches the controls in reading order: digit model, Clear, photo model, file picker.
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert [element for element in reached if element][:4] == ["digit-model", "digit-clear", "photo-model",
                                                                "photo-input"], reached
    # The file picker opens from the keyboard, and what is chosen there is classified.
    page.select_option("#photo-model", PHOTO_MODEL)
    page.focus("#photo-input")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    true_class, png = cifar_pngs[0]
    chooser.value.set_files(files=[{"name": "by-keyboard.png", "mimeType": "image/png", "buffer": png}])
    assert answer_of(desktop, "photo")["label"] == true_class


def test_the_page_is_served_whole_by_this_server(desktop: Visit, web_server: Server) -> None:
    # (Every visit also checks that nothing came from elsewhere: see browsing.open_page.)
    fetched = {url.removeprefix(web_server.url) for url in desktop.requests}
    assert {"/", "/static/app.js", "/static/style.css", "/models"} <= fetched, fetched
    page = httpx.get(web_server.url + "/")
    assert page.headers["content-type"].startswith("text/html")
    # The browser is told to refuse anything from elsewhere.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Module scripts run only when served as JavaScript.
    script = httpx.get(web_server.url + "/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_an_unavailable_model_is_named_with_its_reason_and_cannot_be_picked(
        browser, starter_models: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    for model in (DIGIT_MODELS[0], PHOTO_MODEL):
        shutil.copytree(starter_models / model, repo / model)
    (repo / PHOTO_MODEL / "1" / "model.onnx").write_bytes(b"not an ONNX file")
    with running_server(repo, tmp_path) as server, open_page(browser, server, **DESKTOP) as visit:
        reason = httpx.get(f"{server.url}/models/{PHOTO_MODEL}").json()["error"]
        page = visit.page
        expect(page.locator("#service-notice")).to_have_text(f"Unavailable: {PHOTO_MODEL} ({reason}).")
        expect(page.locator(f"#photo-model option[value='{PHOTO_MODEL}']")).to_be_disabled()
        # Uploads go to a model that serves: the digit model, for a picture of a digit.
        expect(page.locator("#photo-model")).to_have_value(DIGIT_MODELS[0])
        visit.screenshot("unavailable-model")


# --- what the model saw ---------------------------------------------------------------------

def shown_input(visit: Visit, panel: str) -> np.ndarray:
    """The pixels of the panel's "what the model saw" image, as the page decoded them (H×W×3)."""
    image = visit.page.locator(f"#{panel}-result .seen-image")
    expect(image).to_be_visible()
    expect(visit.page.locator(f"#{panel}-result .seen-size")).to_have_text(re.compile(r"^\d+×\d+ px$"))
    pixels = image.evaluate("""img => {
        const canvas = document.createElement("canvas");
        [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
        const context = canvas.getContext("2d");
        context.drawImage(img, 0, 0);
        return { width: canvas.width, height: canvas.height,
                 rgba: Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data) };
    }""")
    return np.array(pixels["rgba"], np.uint8).reshape(pixels["height"], pixels["width"], 4)[..., :3]


def api_input(page, model: str, data: bytes) -> np.ndarray:
    """What the API says the model saw for `data` (H×W×3)."""
    with httpx.Client(base_url=page.url.rstrip("/")) as http:
        answer = http.post(f"/predict/{model}", files={"file": ("x.png", data)}, params={"include": "input"}).json()
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["input_png"]))).convert("RGB"))


def test_the_page_shows_what_the_model_saw_for_a_drawing(desktop: Visit) -> None:
    page = desktop.page
    page.select_option("#digit-model", DIGIT_MODELS[0])
    draw(desktop, DIGITS["7"])
    assert answer_of(desktop, "digit")["label"] == "7"
    shown = shown_input(desktop, "digit")
    desktop.screenshot("seen-digit-7")
    # The 28x28 field, to the pixel what the API returns for the very PNG the pad sent.
    sent = base64.b64decode(page.evaluate("document.getElementById('digit-canvas').toDataURL('image/png')")
                            .split(",")[1])
    assert shown.shape == (28, 28, 3) and np.array_equal(shown, api_input(page, DIGIT_MODELS[0], sent))
    assert shown[0].max() == 0 and shown.max() == 255, "white ink on black, as MNIST"
    # Shown large, with crisp pixels, beside the answer.
    image = page.locator("#digit-result .seen-image")
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    assert image.evaluate("img => img.getBoundingClientRect().width") >= 4 * 28
    assert image.get_attribute("src").startswith("blob:")  # no data: images: the CSP stays as it is
    expect(page.locator("#digit-result .seen-caption")).to_contain_text("What the model saw")
    # The digit benchmark renders these strokes as the pad draws them (testkit/digit_conditions.py).
    pad = np.asarray(Image.open(io.BytesIO(sent)).convert("L"), np.float32)
    rendered = np.asarray(render_like_the_page(DIGITS["7"]), np.float32)
    assert np.corrcoef(pad.ravel(), rendered.ravel())[0, 1] > 0.9
    # Clearing the pad clears the answer and its image.
    page.click("#digit-clear")
    expect(page.locator("#digit-result .seen")).to_have_count(0)


def test_the_page_shows_what_the_model_saw_for_uploads(desktop: Visit, cifar_pngs) -> None:
    page = desktop.page
    page.select_option("#photo-model", PHOTO_MODEL)
    true_class, png = cifar_pngs[1]
    with page.expect_response(lambda response: f"/predict/{PHOTO_MODEL}" in response.url):
        page.set_input_files("#photo-input", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png}])
    assert answer_of(desktop, "photo")["label"] == true_class
    # A 32x32 CIFAR-10 photo reaches the model as it is.
    assert np.array_equal(shown_input(desktop, "photo"), np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    desktop.screenshot("seen-photo")
    # A photo of a digit on white paper, for a digit model: the model saw an MNIST-style field.
    paper = encode(ink_on_paper(mnist_test()[0][0], np.random.default_rng(0)), "JPEG", quality=90)
    page.select_option("#photo-model", DIGIT_MODELS[0])
    with page.expect_response(lambda response: f"/predict/{DIGIT_MODELS[0]}" in response.url):
        page.set_input_files("#photo-input", files=[{"name": "seven.jpg", "mimeType": "image/jpeg", "buffer": paper}])
    assert answer_of(desktop, "photo")["label"] == "7"
    shown = shown_input(desktop, "photo")
    assert shown.shape == (28, 28, 3) and np.array_equal(shown, api_input(page, DIGIT_MODELS[0], paper))
    desktop.screenshot("seen-digit-photo")
