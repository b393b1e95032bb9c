"""Publishing a run into the model repository: the Triton layout, the card, and all-or-nothing writes."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import publish
from export.__main__ import main
from export.errors import ParityGateFailed, RunNotReady
from export.onnx_export import read_metadata, sha256_file
from export.parity import CPU
from export.publish import publish_run
from modelrepo.card import ModelInput, ModelOutput, Preprocessing, metadata_dict, read_card, write_card
from training import run_files
from training.batches import normalise
from training.datasets import DATASETS, DatasetNotFound
from training.registry import architectures

from onnx_tampering import tampering  # tests/export/onnx_tampering.py

LIMIT = 32
@pytest.fixture
def repo(tmp_path):
    return tmp_path / "models"


def publish_fixture(run_dir, repo, **kwargs):
    return publish_run(run_dir, repo, data_dir=kwargs.pop("data_dir", "tests/fixtures"),
                       parity_limit=LIMIT, providers=[CPU], progress=False, **kwargs)


@pytest.fixture
def tamper_after_export(monkeypatch):
    """Make publish_run's exporter perturb the ONNX weights once the file is written."""
    monkeypatch.setattr(publish, "export_onnx", tampering(publish.export_onnx))


def test_publishes_the_triton_layout(make_run, repo):
    run_dir = make_run("lenet5", "cifar10", test_accuracy=0.61, complete=True, epochs_done=3)
    folder = publish_fixture(run_dir, repo)
    assert folder == repo / "lenet5-cifar10"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "1", "1/model.onnx", "card.json", "config.pbtxt", "labels.txt"]
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5-cifar10"]  # no staging leftovers
    assert (folder / "labels.txt").read_text().splitlines() == list(DATASETS["cifar10"].classes)


def test_card_holds_the_contract_and_matches_the_files(make_run, repo):
    run_dir = make_run("cnn", "mnist", test_accuracy=0.9912, epochs_done=12, wall_seconds=95.0,
                       device="cpu (x86_64, 2 threads)", complete=True)
    folder = publish_fixture(run_dir, repo)
    card = read_card(folder)  # decoding it as the repository's Card type-checks every field
    spec = DATASETS["mnist"]
    assert (card.id, card.arch, card.dataset) == ("cnn-mnist", "cnn", "mnist")
    assert card.classes == list(spec.classes)
    assert card.input == ModelInput(name="image", shape=[1, 28, 28], dtype="float32", layout="NCHW")
    assert card.output == ModelOutput(name="logits", shape=[10])
    assert card.preprocessing == Preprocessing(kind="digit", mean=list(spec.mean), std=list(spec.std))
    assert (card.precision, card.test_time_augmentation) == ("fp32", "none")
    assert card.test_accuracy == 0.9912
    assert card.training.epochs == 12 and card.training.wall_seconds == 95.0
    assert card.training.device == "cpu (x86_64, 2 threads)"
    assert card.onnx_sha256 == sha256_file(folder / "1" / "model.onnx")
    assert card.onnx_bytes == (folder / "1" / "model.onnx").stat().st_size
    assert card.weights_sha256 == sha256_file(run_dir / run_files.WEIGHTS)
    assert card.parity.passed and card.parity.images == LIMIT
    assert card.exporter["opset"] == 20 and card.quantization is None


def test_onnx_metadata_is_the_card_without_what_only_exists_after_export(make_run, repo):
    folder = publish_fixture(make_run("preact-residual", "mnist"), repo)
    embedded = read_metadata(folder / "1" / "model.onnx")
    assert embedded == metadata_dict(read_card(folder))
    assert {"parity", "onnx_sha256"}.isdisjoint(embedded) and embedded["id"] == "preact-residual-mnist"


def test_published_model_serves_the_runs_predictions(make_run, repo, fixture_test_split):
    """What ONNX Runtime returns from the folder equals the run's PyTorch logits on real images."""
    run_dir = make_run("inception", "mnist")
    folder = publish_fixture(run_dir, repo)
    metrics = run_files.read_metrics(run_dir)
    model = publish.model_from_run(run_dir, metrics)
    x = normalise(fixture_test_split("mnist").images[:8], DATASETS["mnist"])
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=[CPU])
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    np.testing.assert_allclose(logits, model(x).detach().numpy(), rtol=0, atol=1e-4)


def test_tampered_model_fails_the_gate_and_publishes_nothing(make_run, repo, tamper_after_export):
    with pytest.raises(ParityGateFailed) as failure:
        publish_fixture(make_run("lenet5", "mnist"), repo)
    report = failure.value.report
    assert not report.passed and report.providers[0].max_abs_logit_diff > 1e-4
    assert "FAIL" in str(failure.value)
    assert not repo.exists()


def test_a_failed_republish_keeps_the_published_model(make_run, repo, monkeypatch):
    run_dir = make_run("lenet5", "mnist")
    folder = publish_fixture(run_dir, repo)
    before = read_card(folder).onnx_sha256
    monkeypatch.setattr(publish, "export_onnx", tampering(publish.export_onnx))
    with pytest.raises(ParityGateFailed):
        publish_fixture(run_dir, repo)
    assert read_card(folder).onnx_sha256 == before == sha256_file(folder / "1" / "model.onnx")
    assert sorted(p.name for p in repo.iterdir()) == ["lenet5-mnist"]


def test_republishing_replaces_the_folder(make_run, repo):
    run_dir = make_run("cnn", "mnist", test_accuracy=0.5)
    publish_fixture(run_dir, repo)
    metrics = run_files.read_metrics(run_dir)
    run_files.write_metrics(run_dir, msgspec.structs.replace(metrics, test_accuracy=0.75))
    folder = publish_fixture(run_dir, repo)
    assert read_card(folder).test_accuracy == 0.75
    assert sorted(p.name for p in repo.iterdir()) == ["cnn-mnist"]


@pytest.mark.parametrize("metrics, problem", [
    ({"complete": False, "epochs_done": 3}, "still training"),
    ({"arch": "no-such-net"}, "unknown architecture"),
    ({"dataset": "imagenet"}, "unknown dataset"),
    ({"id": "../escape"}, "not a usable folder name"),
    ({"arch": "lenet5"}, "do not fit lenet5"),  # cnn weights under another architecture's name
])
def test_runs_that_cannot_be_exported_are_refused(make_run, repo, metrics, problem):
    run_dir = make_run("cnn", "mnist")
    run_files.write_metrics(run_dir, msgspec.structs.replace(run_files.read_metrics(run_dir), **metrics))
    with pytest.raises(RunNotReady, match=problem):
        publish_fixture(run_dir, repo)
    assert not repo.exists()


def test_missing_metrics_keys_are_named(make_run, repo):
    run_dir = make_run("cnn", "mnist")
    (run_dir / run_files.METRICS).write_text(json.dumps({"id": "cnn-mnist"}))
    with pytest.raises(RunNotReady, match="missing required field `arch`"):
        publish_fixture(run_dir, repo)


def test_missing_dataset_is_a_clear_error(make_run, repo, tmp_path):
    with pytest.raises(DatasetNotFound):
        publish_fixture(make_run("cnn", "mnist"), repo, data_dir=tmp_path / "empty")
    assert not repo.exists()


# --- the command line ----------------------------------------------------------------------

def cli(run_dir, repo, *args) -> list[str]:
    return ["--runs", str(run_dir.parent), "--models", str(repo), "--data-dir", "tests/fixtures",
            "--limit", str(LIMIT), "--providers", "cpu", *args]


def test_cli_publishes_one_run_and_prints_the_report(make_run, repo, capsys):
    run_dir = make_run("residual", "mnist", complete=True)
    assert main(cli(run_dir, repo, "export", "--id", "residual-mnist")) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "pass" in out and "published" in out
    assert (repo / "residual-mnist" / "card.json").exists()


def test_cli_exits_non_zero_and_prints_the_report_when_the_gate_fails(make_run, repo, capsys,
                                                                      tamper_after_export):
    run_dir = make_run("residual", "mnist", complete=True)
    assert main(cli(run_dir, repo, "export", "--id", "residual-mnist")) == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "max|dlogit|" in err and "nothing was published" in err
    assert not repo.exists()


def test_cli_reports_an_unknown_run(tmp_path, repo, capsys):
    (tmp_path / "runs").mkdir()
    assert main(cli(tmp_path / "runs" / "x", repo, "export", "--id", "nope-mnist")) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_cli_export_all_publishes_finished_runs_once(make_run, repo, capsys):
    finished = make_run("cnn", "mnist", complete=True)
    make_run("lenet5", "mnist", complete=False)
    assert main(cli(finished, repo, "export-all")) == 0
    out = capsys.readouterr().out
    assert "lenet5-mnist: not finished training; skipped" in out
    assert sorted(p.name for p in repo.iterdir()) == ["cnn-mnist"]
    assert main(cli(finished, repo, "export-all")) == 0
    assert "already published from these weights" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--providers", "gpu"], ["--limit", "0"], ["--limit", "-5"]])
def test_cli_rejects_bad_options_with_a_usage_error(make_run, repo, capsys, bad):
    run_dir = make_run("cnn", "mnist", complete=True)
    with pytest.raises(SystemExit) as exit_:
        main([*bad, "--runs", str(run_dir.parent), "--models", str(repo), "export", "--id", "cnn-mnist"])
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not repo.exists()


def test_a_parity_limit_below_one_is_refused(make_run, repo):
    with pytest.raises(ValueError, match="at least 1"):
        publish_run(make_run("cnn", "mnist"), repo, parity_limit=0)


def test_cli_report_tabulates_every_published_models_parity(make_run, repo, capsys):
    folder = publish_fixture(make_run("cnn", "mnist"), repo)
    capsys.readouterr()
    assert main(["--models", str(repo), "report"]) == 0
    header, _, row = capsys.readouterr().out.strip().splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    parity = read_card(folder).parity
    assert "max abs logit diff" in header
    assert cells[:3] == ["cnn-mnist", str(LIMIT), "CPUExecutionProvider"]
    assert float(cells[3]) == pytest.approx(parity.providers[0].max_abs_logit_diff, rel=0.01)


def test_redescribe_changes_the_words_and_never_the_graph(make_run, repo):
    folder = publish_fixture(make_run("cnn", "mnist"), repo)
    onnx_path = folder / "1" / "model.onnx"
    graph_before = onnx.load(str(onnx_path)).graph.SerializeToString()
    card = read_card(folder)
    write_card(folder, msgspec.structs.replace(card, description="an outdated description"))

    card = publish.redescribe(folder)
    arch = architectures()["cnn"]
    assert card.description == f"{arch.summary} [{arch.paper}]" == read_card(folder).description
    assert onnx.load(str(onnx_path)).graph.SerializeToString() == graph_before
    assert read_metadata(onnx_path) == metadata_dict(read_card(folder))
    assert read_card(folder).onnx_sha256 == sha256_file(onnx_path)
    assert sorted(p.name for p in repo.iterdir()) == ["cnn-mnist"], "no staging folder is left behind"


def test_a_flip_averaged_run_exports_the_flip_average(make_run, repo, fixture_test_split):
    """A recipe with tta=hflip: the ONNX graph itself averages over the mirror image, so the
    gate, the service and the card all see the model the run's figures measured."""
    run_dir = make_run("lenet5", "cifar10", recipe={"tta": "hflip"})
    folder = publish_fixture(run_dir, repo)
    assert read_card(folder).test_time_augmentation == "hflip"
    x = normalise(fixture_test_split("cifar10").images[:8], DATASETS["cifar10"])
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=[CPU])
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    (mirrored,) = session.run(["logits"], {"image": x.flip(3).numpy()})
    np.testing.assert_allclose(logits, mirrored, rtol=0, atol=1e-5)  # flip-invariant by construction
    plain = publish.model_from_run(run_dir, run_files.read_metrics(run_dir)).net
    np.testing.assert_allclose(logits, ((plain(x) + plain(x.flip(3))) / 2).detach().numpy(), rtol=0, atol=1e-4)
