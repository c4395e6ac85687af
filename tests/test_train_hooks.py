"""The test-only SFT step delay (CODEIFT_TEST_SFT_STEP_SECONDS) sleeps only when set, only
after optimizer steps, and only in a run that starts from scratch."""

from __future__ import annotations

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from codeift.train import sft
from codeift.train.sft import STEP_DELAY_ENV, TrainError, step_delay_callbacks


@pytest.fixture
def sleeps(monkeypatch):
    """Every time.sleep the hook makes, recorded instead of slept."""
    calls: list[float] = []
    monkeypatch.setattr(sft.time, "sleep", calls.append)
    return calls


def _run_steps(callbacks: list, steps: int, tmp_path) -> None:
    """Drive the callbacks through transformers' own handler as Trainer does: begin, steps, end."""
    handler = CallbackHandler(callbacks, None, None, None, None)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    handler.on_train_begin(args, state, control)
    for _ in range(steps):
        handler.on_step_begin(args, state, control)
        handler.on_substep_end(args, state, control)
        handler.on_step_end(args, state, control)
        handler.on_log(args, state, control, logs={"loss": 1.0})
        handler.on_save(args, state, control)
    handler.on_train_end(args, state, control)


def test_no_delay_when_the_variable_is_unset_or_empty(monkeypatch, sleeps, tmp_path):
    monkeypatch.delenv(STEP_DELAY_ENV, raising=False)
    assert step_delay_callbacks(resuming=False) == []
    monkeypatch.setenv(STEP_DELAY_ENV, "")
    assert step_delay_callbacks(resuming=False) == []
    _run_steps(step_delay_callbacks(resuming=False), 3, tmp_path)
    assert sleeps == []


def test_a_fresh_run_sleeps_once_after_each_step(monkeypatch, sleeps, tmp_path, capsys):
    monkeypatch.setenv(STEP_DELAY_ENV, "2.5")
    callbacks = step_delay_callbacks(resuming=False)
    assert f"{STEP_DELAY_ENV}=2.5: sleeping after each step" in capsys.readouterr().out
    _run_steps(callbacks, 4, tmp_path)
    assert sleeps == [2.5, 2.5, 2.5, 2.5]


def test_a_resumed_run_does_not_sleep(monkeypatch, sleeps, tmp_path, capsys):
    monkeypatch.setenv(STEP_DELAY_ENV, "2")
    assert step_delay_callbacks(resuming=True) == []
    assert f"{STEP_DELAY_ENV}=2: not applied (resuming)" in capsys.readouterr().out
    assert sleeps == []


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_value_that_is_not_a_delay_is_refused(monkeypatch, raw):
    monkeypatch.setenv(STEP_DELAY_ENV, raw)
    with pytest.raises(TrainError, match=STEP_DELAY_ENV):
        step_delay_callbacks(resuming=False)
