"""Damaged and hostile model folders: each defect is one clear error naming the file, before anything is built.

Never random weights for missing tensors, never a raw library traceback, never a pickle unpickled, never a
nonsense config allocated."""

from __future__ import annotations

import os

import pytest

from damage import SANA_DEFECTS, VERIFIER_DEFECTS, damaged
from models import ModelFolderError, SanaSprint, VHSVerifier, check_sana_sprint_folder, check_verifier_folder


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("damaged"))


@pytest.mark.parametrize("defect", sorted(SANA_DEFECTS))
def test_damaged_sana_sprint_folder_is_one_clear_error(bundle, root, defect):
    folder, phrase = damaged(bundle["sana"], root, defect, "sana")
    with pytest.raises(ModelFolderError) as e:
        SanaSprint.from_pretrained(folder, dtype="fp32")
    message = str(e.value)
    assert phrase in message and folder in message, message
    assert "\n" not in message and "Traceback" not in message
    assert not os.path.exists(os.path.join(root, "pwned")), "a pickle was unpickled"


@pytest.mark.parametrize("defect", sorted(VERIFIER_DEFECTS))
def test_damaged_verifier_folder_is_one_clear_error(bundle, root, defect):
    folder, phrase = damaged(bundle["hidden"], root, defect, "hidden")
    with pytest.raises(ModelFolderError) as e:
        VHSVerifier.from_pretrained(folder)
    message = str(e.value)
    assert phrase in message and folder in message, message
    assert not os.path.exists(os.path.join(root, "pwned")), "a pickle was unpickled"


def test_folder_checks_catch_what_they_can_without_building_anything(bundle, root):
    """The quick checks the loader nodes run at validation time (headers only, no weights read) already name what is
    wrong for every defect that needs no weights loaded."""
    quick = {"model_index_empty", "model_index_not_json", "other_pipeline", "other_transformer_class",
             "transformer_truncated", "transformer_zero_bytes", "no_tokenizer", "absurd_config", "pickle_weights"}
    for defect in quick:
        folder, phrase = damaged(bundle["sana"], root, defect, "sana")
        with pytest.raises(ModelFolderError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
            check_sana_sprint_folder(folder)
    quick = {"config_not_json", "config_empty", "plain_qwen2", "no_connector", "absurd_projector",
             "huge_mm_hidden_size", "wrong_mm_hidden_size", "weights_truncated", "weights_zero_bytes", "no_tokenizer",
             "pickle_weights"}
    for defect in quick:
        folder, phrase = damaged(bundle["hidden"], root, defect, "hidden")
        with pytest.raises(ModelFolderError) as e:
            check_verifier_folder(folder)
        assert phrase in str(e.value), (defect, str(e.value))


def test_good_folders_pass_the_checks(bundle):
    assert check_sana_sprint_folder(bundle["sana"])["_class_name"] == "SanaSprintPipeline"
    _, spec, files = check_verifier_folder(bundle["hidden"])
    assert spec.kind == "hidden" and files
