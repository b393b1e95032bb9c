"""INT8 variants: the gate both ways, the card, and the command line, on committed trained models
quantized by the real ONNX Runtime quantizer on the real fixture images (testkit/int8_models.py).

cnn-mnist quantizes well and passes. lenet5-cifar10 is a real failure: int8 keeps its accuracy but
changes too many of its answers (2 to 3 in 100, on the fixture and on the full test set).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from testkit.int8_models import CALIBRATION_IMAGES, SELECTION_IMAGES, copy_committed, fixture_images, quantize_committed

from export.__main__ import main
from export.errors import Int8GateFailed, NotQuantizable
from export.int8_gate import MAX_ACCURACY_DROP, MIN_TOP1_AGREEMENT, compare
from export.model_folder import read_metadata, sha256_file
from export.parity import CPU
from export.publish import publish_run
from export.quantize import (METHODS, SCHEMES, LabelledImages, calibration_split, cpu_session, logits_of,
                             normalised, prepare, quantize_model)
from modelrepo.card import metadata_dict, read_card
from modelrepo.layout import MODEL_FILE

FIXTURE_TEST_IMAGES = 500


@pytest.fixture(scope="module")
def int8_repo(tmp_path_factory, fixtures_dir):
    """A repository holding cnn-mnist (committed) and cnn-mnist-int8, quantized once for this module."""
    repo = tmp_path_factory.mktemp("int8") / "models"
    quantize_committed("cnn-mnist", repo, fixtures_dir)
    return repo


# --- the gate itself ---------------------------------------------------------------------------

def logits_for(predicted: list[int], classes: int = 10) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[predicted]


def test_the_gate_passes_exactly_at_both_limits():
    labels = np.zeros(1000, dtype=int)
    fp32 = [0] * 1000                      # 100 % accurate
    int8 = [0] * 995 + [1] * 5             # 5 answers changed: drop 0.5 points, agreement 99.5 %
    at_drop_limit = compare(logits_for(fp32), logits_for(int8), labels)
    assert at_drop_limit.accuracy_drop == MAX_ACCURACY_DROP and at_drop_limit.passes()
    assert not compare(logits_for(fp32), logits_for([0] * 994 + [1] * 6), labels).passes()


def test_agreement_is_required_even_when_the_accuracy_holds():
    labels = np.array([0, 1] * 500)
    fp32 = [0, 1] * 500                        # every answer right
    int8 = [0, 1] * 495 + [1, 0] * 5           # 10 wrong: drop 1 point
    assert not compare(logits_for(fp32), logits_for(int8), labels).passes()
    # Errors that trade places: both models 90 % accurate, but they disagree on 2 % of the images.
    labels = np.zeros(1000, dtype=int)
    fp32 = [0] * 890 + [1] * 10 + [0] * 10 + [2] * 90
    int8 = [0] * 890 + [0] * 10 + [1] * 10 + [2] * 90
    same_accuracy = compare(logits_for(fp32), logits_for(int8), labels)
    assert same_accuracy.accuracy_drop == 0 and same_accuracy.top1_agreement == 0.98 < MIN_TOP1_AGREEMENT
    assert not same_accuracy.passes()


def test_non_finite_int8_logits_count_as_wrong_and_disagreeing():
    labels = np.zeros(4, dtype=int)
    fp32 = logits_for([0, 0, 0, 0])
    int8 = fp32.copy()
    int8[1, 3] = np.nan  # argmax alone would still say class 0
    comparison = compare(fp32, int8, labels)
    assert (comparison.int8_accuracy, comparison.top1_agreement) == (0.75, 0.75)


def test_calibration_and_selection_images_are_disjoint_seeded_training_samples(fixtures_dir):
    train = fixture_images("mnist", True, fixtures_dir)
    calibration, selection = calibration_split(train, 200, 300, seed=0)
    assert (len(calibration), len(selection)) == (200, 300)
    rows = {row.tobytes() for row in calibration.pixels}
    assert not rows & {row.tobytes() for row in selection.pixels}
    again, _ = calibration_split(train, 200, 300, seed=0)
    other, _ = calibration_split(train, 200, 300, seed=1)
    assert np.array_equal(again.pixels, calibration.pixels) and not np.array_equal(other.pixels, calibration.pixels)
    with pytest.raises(NotQuantizable, match="holds 2000"):
        calibration_split(train, 1500, 600, seed=0)


def test_preparing_a_mirror_averaged_graph_keeps_one_copy_of_each_weight(make_run, tmp_path, fixtures_dir):
    """Folding BatchNorm per Conv node would copy every weight of the test-time-flip graph's two branches."""
    run = make_run("residual", "mnist", recipe={"tta": "hflip"})
    folder = publish_run(run, tmp_path / "models", data_dir=fixtures_dir, parity_limit=32, providers=[CPU],
                         progress=False)
    prepare(folder / MODEL_FILE, tmp_path / "prepared.onnx")
    prepared = onnx.load(str(tmp_path / "prepared.onnx"))
    assert "BatchNormalization" not in {node.op_type for node in prepared.graph.node}  # folded
    contents = [onnx.numpy_helper.to_array(t).tobytes() for t in prepared.graph.initializer]
    assert len(contents) == len(set(contents))
    fp32_bytes = (folder / MODEL_FILE).stat().st_size
    assert (tmp_path / "prepared.onnx").stat().st_size < 1.1 * fp32_bytes
    inputs = normalised(fixture_images("mnist", False, fixtures_dir).pixels[:64], read_card(folder).preprocessing)
    np.testing.assert_allclose(logits_of(cpu_session(tmp_path / "prepared.onnx"), inputs),
                               logits_of(cpu_session(folder / MODEL_FILE), inputs), rtol=0, atol=1e-4)


# --- a passing quantization, and its card --------------------------------------------------------

def test_a_good_quantization_is_published_in_the_triton_layout(int8_repo):
    folder = int8_repo / "cnn-mnist-int8"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "1", "1/model.onnx", "card.json", "config.pbtxt", "labels.txt"]
    assert sorted(p.name for p in int8_repo.iterdir()) == ["cnn-mnist", "cnn-mnist-int8"]  # no staging leftovers
    assert 'name: "cnn-mnist-int8"' in (folder / "config.pbtxt").read_text()
    assert (folder / "labels.txt").read_text() == (int8_repo / "cnn-mnist" / "labels.txt").read_text()


def test_the_published_graph_is_really_int8(int8_repo):
    int8 = onnx.load(str(int8_repo / "cnn-mnist-int8" / MODEL_FILE))
    ops = {node.op_type for node in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in int8.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights, "the convolution weights are stored as int8"
    fp32_bytes = (int8_repo / "cnn-mnist" / MODEL_FILE).stat().st_size
    assert read_card(int8_repo / "cnn-mnist-int8").onnx_bytes < 0.4 * fp32_bytes


def test_the_int8_card_states_the_quantization_and_its_gate(int8_repo, fixtures_dir):
    fp32_card = read_card(int8_repo / "cnn-mnist")
    card = read_card(int8_repo / "cnn-mnist-int8")  # decoding as the repository's Card type-checks it
    q = card.quantization
    assert (card.id, card.arch, card.dataset, card.precision) == ("cnn-mnist-int8", "cnn", "mnist", "int8")
    assert card.parity is None and (card.classes, card.preprocessing) == (fp32_card.classes, fp32_card.preprocessing)
    assert (q.source_model, q.source_onnx_sha256) == ("cnn-mnist", fp32_card.onnx_sha256)
    assert q.scheme in SCHEMES and q.scheme.format == "QDQ" and q.scheme.per_channel
    assert (q.calibration.method in METHODS, q.calibration.images, q.calibration.split) == (True, CALIBRATION_IMAGES, "train")
    assert "onnxruntime" in q.quantizer

    # Every candidate was measured on held-out training images; the chosen one agrees most.
    assert [c.method for c in q.candidates] == [m for m in METHODS for _ in SCHEMES]
    assert all(c.images == SELECTION_IMAGES and c.split == "train" for c in q.candidates)
    chosen = next(c for c in q.candidates if (c.method, c.scheme) == (q.calibration.method, q.scheme))
    assert chosen.top1_agreement == max(c.top1_agreement for c in q.candidates)

    # The gate's figures are what the two files give on the test images, recomputed here.
    test = fixture_images("mnist", False, fixtures_dir)
    inputs = normalised(test.pixels, card.preprocessing)
    fp32 = logits_of(cpu_session(int8_repo / "cnn-mnist" / MODEL_FILE), inputs).argmax(1)
    int8 = logits_of(cpu_session(int8_repo / "cnn-mnist-int8" / MODEL_FILE), inputs).argmax(1)
    gate = q.gate
    assert gate.passed and (gate.images, gate.split, gate.model_id) == (FIXTURE_TEST_IMAGES, "test", "cnn-mnist-int8")
    assert gate.fp32_accuracy == pytest.approx((fp32 == test.labels).mean(), abs=1e-12)
    assert gate.int8_accuracy == pytest.approx((int8 == test.labels).mean(), abs=1e-12) == card.test_accuracy
    assert gate.top1_agreement == pytest.approx((fp32 == int8).mean(), abs=1e-12)
    assert gate.top1_agreement >= MIN_TOP1_AGREEMENT
    assert (gate.max_accuracy_drop, gate.min_top1_agreement) == (MAX_ACCURACY_DROP, MIN_TOP1_AGREEMENT)
    assert "avx2" in gate.cpu or "x86" not in gate.cpu


def test_the_int8_file_embeds_its_own_card(int8_repo):
    folder = int8_repo / "cnn-mnist-int8"
    card = read_card(folder)
    assert read_metadata(folder / MODEL_FILE) == metadata_dict(card)
    assert card.onnx_sha256 == sha256_file(folder / MODEL_FILE)
    assert card.onnx_bytes == (folder / MODEL_FILE).stat().st_size


# --- failing quantizations: nothing is published -------------------------------------------------

def test_a_model_whose_answers_int8_changes_fails_the_gate_and_publishes_nothing(tmp_path, fixtures_dir):
    repo = tmp_path / "models"
    with pytest.raises(Int8GateFailed) as failure:
        quantize_committed("lenet5-cifar10", repo, fixtures_dir)
    report = failure.value.report
    assert not report.passed and report.top1_agreement < MIN_TOP1_AGREEMENT
    assert report.images == FIXTURE_TEST_IMAGES and "FAIL" in str(failure.value)
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5-cifar10"]


def blank_training_images(fixtures_dir) -> LabelledImages:
    """The MNIST fixture's training split with every pixel black: a calibration that sees nothing."""
    train = fixture_images("mnist", True, fixtures_dir)
    return LabelledImages(np.zeros_like(train.pixels), train.labels)


def test_a_broken_calibration_fails_the_gate_on_accuracy(tmp_path, fixtures_dir):
    """Calibrated on blank images, every activation range is far too narrow: int8 clips everything."""
    with pytest.raises(Int8GateFailed) as failure:
        quantize_committed("cnn-mnist", tmp_path / "models", fixtures_dir, train=blank_training_images(fixtures_dir),
                           methods=["MinMax"])
    assert failure.value.report.fp32_accuracy - failure.value.report.int8_accuracy > MAX_ACCURACY_DROP
    assert not (tmp_path / "models" / "cnn-mnist-int8").exists()


def test_a_failed_requantization_keeps_the_published_int8_model(int8_repo, tmp_path, fixtures_dir):
    repo = shutil.copytree(int8_repo, tmp_path / "models")
    before = read_card(repo / "cnn-mnist-int8").onnx_sha256
    with pytest.raises(Int8GateFailed):
        quantize_committed("cnn-mnist", repo, fixtures_dir, train=blank_training_images(fixtures_dir), methods=["MinMax"])
    assert read_card(repo / "cnn-mnist-int8").onnx_sha256 == before == sha256_file(repo / "cnn-mnist-int8" / MODEL_FILE)
    assert sorted(p.name for p in repo.iterdir()) == ["cnn-mnist", "cnn-mnist-int8"]


def test_only_an_intact_fp32_model_is_quantized(int8_repo, tmp_path, fixtures_dir):
    train, test = fixture_images("mnist", True, fixtures_dir), fixture_images("mnist", False, fixtures_dir)
    with pytest.raises(NotQuantizable, match="already int8"):
        quantize_model(int8_repo / "cnn-mnist-int8", tmp_path, train=train, test=test, progress=False)
    damaged = copy_committed("lenet5-mnist", tmp_path / "damaged")
    with open(damaged / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(NotQuantizable, match="not the file its card describes"):
        quantize_model(damaged, tmp_path / "damaged", train=train, test=test, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]


def test_the_quantizer_needs_no_torch():
    code = "import sys, export.quantize, export.int8_gate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# --- the command line ----------------------------------------------------------------------------

def cli(repo, command, *args, limit: int | None = None) -> list[str]:
    return ["--models", str(repo), "--data-dir", "tests/fixtures", *(["--limit", str(limit)] if limit else []),
            command, *args, "--calibration-images", str(CALIBRATION_IMAGES),
            "--selection-images", str(SELECTION_IMAGES)]


def test_cli_quantizes_one_model_and_prints_the_gate(tmp_path, capsys):
    repo = tmp_path / "models"
    copy_committed("lenet5-mnist", repo)
    assert main(cli(repo, "quantize", "--id", "lenet5-mnist", "--methods", "MinMax")) == 0
    out = capsys.readouterr().out
    assert "int8 gate of lenet5-mnist-int8 on 500 test images" in out and "pass" in out and "published" in out
    assert read_card(repo / "lenet5-mnist-int8").quantization.calibration.method == "MinMax"


def test_cli_exits_1_and_publishes_nothing_when_the_gate_fails(tmp_path, capsys):
    repo = tmp_path / "models"
    copy_committed("lenet5-cifar10", repo)
    assert main(cli(repo, "quantize", "--id", "lenet5-cifar10", "--methods", "MinMax")) == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "top-1 agreement" in err and "nothing was published" in err
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5-cifar10"]


def test_cli_exits_2_for_a_model_that_is_not_there(tmp_path, capsys):
    assert main(cli(tmp_path / "models", "quantize", "--id", "nope-cifar10")) == 2
    assert "card.json is missing" in capsys.readouterr().err


def test_cli_quantize_all_takes_every_cifar10_model_once(tmp_path, capsys):
    repo = tmp_path / "models"
    copy_committed("lenet5-mnist", repo)  # not a CIFAR-10 model: left alone
    copy_committed("nin-cifar10", repo)
    few = {"limit": 100}  # NIN is the slowest committed model: one method, 100 test images
    assert main(cli(repo, "quantize-all", "--methods", "MinMax", **few)) == 0
    assert "nin-cifar10-int8: published" in capsys.readouterr().out
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5-mnist", "nin-cifar10", "nin-cifar10-int8"]
    card = read_card(repo / "nin-cifar10-int8")
    assert main(cli(repo, "quantize-all", "--methods", "MinMax", **few)) == 0
    assert "nin-cifar10-int8 already comes from this fp32 file" in capsys.readouterr().out
    assert read_card(repo / "nin-cifar10-int8") == card


@pytest.mark.parametrize("bad", [["--methods", "Median"], ["--calibration-images", "0"]])
def test_cli_rejects_bad_quantize_options(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_:
        main(["--models", str(tmp_path), "quantize", "--id", "cnn-mnist", *bad])
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_cli_report_adds_the_int8_table(int8_repo, capsys):
    assert main(["--models", str(int8_repo), "report"]) == 0
    out = capsys.readouterr().out
    int8_rows = [line for line in out.splitlines() if line.startswith("| cnn-mnist-int8 ")]
    card = read_card(int8_repo / "cnn-mnist-int8")
    assert len(int8_rows) == 1 and card.quantization.scheme.label() in int8_rows[0]
    assert f"{100 * card.quantization.gate.top1_agreement:.2f} %" in int8_rows[0]
