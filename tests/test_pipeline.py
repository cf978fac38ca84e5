"""``preprocess.py run``: the file names the trainer expects, reruns that skip work, resuming after a kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.pipeline import load_pipeline_config, read_text_settings, run_pipeline
from xlm.data.tokenize import Tokenizer
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parents[1]
SLICE = ROOT / "data" / "msgcorpus"
SPLIT_LINES = {"train": 300, "valid": 40, "test": 40}


def make_raw(folder: Path) -> dict:
    """Small copies of the slice: en/fr monolingual and en-fr parallel; returns the mono/para config."""
    folder.mkdir(parents=True, exist_ok=True)
    mono: dict = {"en": {}, "fr": {}}
    para: dict = {"en-fr": {}}
    for split, n in SPLIT_LINES.items():
        for lang in ("en", "fr"):
            for kind, name in (("mono", f"{split}.{lang}"), ("para", f"{split}.en-fr.{lang}")):
                lines = (SLICE / kind / name).read_text(encoding="utf-8").split("\n")[:n]
                dst = folder / f"{kind}.{name}"
                dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
                if kind == "mono":
                    mono[lang][split] = str(dst)
                else:
                    para["en-fr"].setdefault(split, {})[lang] = str(dst)
    return {"mono": mono, "para": para}


def write_config(path: Path, output: Path, inputs: dict, **extra) -> Path:
    cfg = {
        "output": str(output),
        "tokenize": True,
        "lower_remove_accent": True,
        "bpe": {"n_codes": 300},
        "workers": 2,
        **inputs,
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


EXPECTED = {"vocab", "codes", "preprocess.json"} | {
    f"{split}.{name}.{ext}"
    for split in SPLIT_LINES
    for name in ("en", "fr", "en-fr.en", "en-fr.fr")
    for ext in ("bin", "idx")
}


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file the pipeline produces, work files included (stamps and the lock excluded)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "stamps" not in p.parts and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    inputs = make_raw(tmp / "raw")
    config = write_config(tmp / "data.yaml", tmp / "out", inputs)
    report = run_pipeline(config)
    return tmp, inputs, config, report


def test_output_folder_is_what_the_trainer_reads(clean_run):
    tmp, _, _, report = clean_run
    out = tmp / "out"
    assert {p.name for p in out.iterdir() if p.is_file() and p.name != ".lock"} == EXPECTED
    assert not report.skipped
    settings = read_text_settings(out)
    assert settings["tokenize"] is True and settings["tokenizer"] == "moses-187a75cb5"
    assert settings["segmenters"] == {"en": {"name": "moses"}, "fr": {"name": "moses"}}
    assert settings["segmentation"] == "bpe" and settings["lower_remove_accent"] is True
    tok = Tokenizer.from_settings("fr", settings)  # rebuilds the tokenizer that wrote work/tok/
    raw = Path(yaml.safe_load((tmp / "data.yaml").read_text())["mono"]["fr"]["train"]).read_text(encoding="utf-8")
    assert tok.tokenize_block(raw) == (out / "work" / "tok" / "train.fr").read_text(encoding="utf-8")
    dico = Dictionary.read_vocab(out / "vocab")
    for name in EXPECTED - {"vocab", "codes", "preprocess.json"}:
        ds = IndexedDataset(out / name.rsplit(".", 1)[0])
        ds.validate()
        assert ds.vocab_fingerprint == dico.fingerprint()
    for split, n in SPLIT_LINES.items():
        assert len(IndexedDataset(out / f"{split}.en-fr.en")) == len(IndexedDataset(out / f"{split}.en-fr.fr")) == n
    # end to end: ids -> BPE pieces -> (undo BPE) -> exactly the tokenized training text
    train = IndexedDataset(out / "train.fr")
    tokenized = (out / "work" / "tok" / "train.fr").read_text(encoding="utf-8").split("\n")
    assert [" ".join(dico.decode(train[i])).replace("@@ ", "") for i in range(len(train))] == tokenized[:-1]
    assert train.header["source"].endswith("mono.train.fr")


def test_rerun_skips_every_step_and_changes_nothing(clean_run):
    tmp, _, config, first = clean_run
    before = outputs(tmp / "out")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp / "out").rglob("*") if p.is_file() and p.name != ".lock"}
    report = run_pipeline(config)
    assert report.ran == [] and sorted(report.skipped) == sorted(first.ran)
    assert outputs(tmp / "out") == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_killed_run_resumes_to_identical_outputs(clean_run, tmp_path):
    tmp, inputs, _, _ = clean_run
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs)
    proc = subprocess.Popen(
        [sys.executable, "preprocess.py", "run", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stamps = tmp_path / "out" / "work" / "stamps"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and len(list(stamps.glob("*.json"))) < 3:
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-run
    proc.wait()
    report = run_pipeline(config)
    assert report.ran  # there was work left
    assert outputs(tmp_path / "out") == outputs(tmp / "out")
    assert not list((tmp_path / "out").rglob(".*.tmp"))


def test_changed_setting_reruns_only_what_depends_on_it(clean_run, tmp_path):
    tmp, inputs, _, _ = clean_run
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs)
    run_pipeline(config)
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs, bpe={"n_codes": 200})
    report = run_pipeline(config)
    assert all(name.startswith("tokenize") for name in report.skipped) and len(report.skipped) == 12
    assert "learn-bpe" in report.ran and len((tmp_path / "out" / "codes").read_text().splitlines()) == 200


def test_existing_codes_and_vocab_reproduce_the_data(clean_run, tmp_path):
    """Preprocessing with released-style codes and vocabulary gives the same ids as the run that made them."""
    tmp, inputs, _, _ = clean_run
    first = tmp / "out"
    config = write_config(
        tmp_path / "data.yaml",
        tmp_path / "out",
        inputs,
        bpe={"codes": str(first / "codes"), "vocab": str(first / "vocab")},
    )
    report = run_pipeline(config)
    assert "copy vocab" in report.ran and "learn-bpe" not in report.ran
    assert (tmp_path / "out" / "vocab").read_bytes() == (first / "vocab").read_bytes()
    for name in ("train.en.bin", "train.en.idx", "train.en-fr.fr.bin"):
        assert (tmp_path / "out" / name).read_bytes() == (first / name).read_bytes()
    # held-out text: BPE restricted to the vocabulary (fastBPE's vocab option) avoids unknown subwords
    restricted, plain = IndexedDataset(tmp_path / "out" / "valid.fr"), IndexedDataset(first / "valid.fr")
    assert restricted.header["n_unk"] < plain.header["n_unk"]


def test_sentencepiece_segmentation(clean_run, tmp_path):
    _, inputs, _, _ = clean_run
    config = write_config(
        tmp_path / "data.yaml",
        tmp_path / "out",
        inputs,
        segmentation="sentencepiece",
        sentencepiece={"vocab_size": 200},
        tokenize=False,
        bpe={},
    )
    run_pipeline(config)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir() if p.is_file() and p.name != ".lock"} == EXPECTED - {"codes"} | {"spm.model"}
    dico = Dictionary.read_vocab(out / "vocab")
    assert IndexedDataset(out / "valid.en").vocab_fingerprint == dico.fingerprint()


def test_failed_step_reports_file_and_line_then_rerun_completes(clean_run, tmp_path):
    tmp, inputs, _, _ = clean_run
    bad = Path(inputs["para"]["en-fr"]["valid"]["fr"])
    broken = tmp_path / "valid.fr"
    broken.write_bytes(bad.read_bytes().replace(b"\n", b"\n\xff", 1))
    inputs = {
        **inputs,
        "para": {
            "en-fr": {
                **inputs["para"]["en-fr"],
                "valid": {"en": inputs["para"]["en-fr"]["valid"]["en"], "fr": str(broken)},
            }
        },
    }
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs)
    with pytest.raises(XLMError, match=r"valid\.fr:2: invalid UTF-8"):
        run_pipeline(config)
    broken.write_bytes(bad.read_bytes())
    run_pipeline(config)
    got, want = outputs(tmp_path / "out"), outputs(tmp / "out")
    assert {k: v for k, v in got.items() if "valid.en-fr.fr" not in k} == {
        k: v for k, v in want.items() if "valid.en-fr.fr" not in k
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bpe": {"n_code": 10}}, "unknown config key 'bpe.n_code'"),
        ({"para": {"fr-en": {}}}, "para.fr-en: write the pair in alphabetical order, 'en-fr'"),
        ({"mono": {"en": {"train": "/no/such/file"}}}, "mono.en.train: file '/no/such/file' not found"),
        ({"mono": {"en": {"dev": "x"}}}, "mono.en.dev: unknown split"),
        ({"bpe": {"n_codes": 10, "codes": "c"}}, "bpe: give either n_codes"),
        ({"workers": "two"}, "workers: expected an integer"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    inputs = make_raw(tmp_path / "raw")
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", {**inputs, **change})
    with pytest.raises(XLMError, match="data.yaml: " + message.replace("(", r"\(").replace(".", r"\.")):
        load_pipeline_config(config)


def test_parallel_files_of_different_lengths_are_refused(tmp_path):
    inputs = make_raw(tmp_path / "raw")
    short = Path(inputs["para"]["en-fr"]["test"]["fr"])
    short.write_text("\n".join(short.read_text().split("\n")[:10]) + "\n")
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs)
    with pytest.raises(
        XLMError,
        match=r"para\.en-fr\.test: parallel files differ in length: en .* has 40 lines "
        r"but fr .* has 10 lines",
    ):
        run_pipeline(config)


def test_a_language_without_its_segmenter_stops_before_any_work(tmp_path):
    (tmp_path / "train.th").write_text("สวัสดีครับ\n", encoding="utf-8")
    inputs = {"mono": {"th": {"train": str(tmp_path / "train.th")}}}
    config = write_config(tmp_path / "data.yaml", tmp_path / "out", inputs)
    code = "import sys; sys.modules['pythainlp'] = None; from xlm.cli.preprocess import main; main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, "run", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "'.[th]'" in proc.stderr and "segmenters: {th: NAME}" in proc.stderr and "\n" not in proc.stderr.strip()
    assert not (tmp_path / "out" / "work").exists()
    with pytest.raises(XLMError, match="segmenters.th: unknown segmenter 'kytea'"):
        write_config(config, tmp_path / "out", inputs, segmenters={"th": "kytea"})
        load_pipeline_config(config)
