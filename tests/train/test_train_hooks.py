"""The test-only hooks (tests/hooks): the SFT step delay sleeps only when set, only after
optimizer steps, only in a run that starts from scratch, and reaches the package's SFT in a
subprocess; the package itself carries no hook."""

from __future__ import annotations

import subprocess
import sys

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from tests.hooks import codeift_test_hooks as hooks
from tests.hooks.codeift_test_hooks import STEP_DELAY_ENV, hooked_env, step_delay_callback


@pytest.fixture
def sleeps(monkeypatch):
    """Every time.sleep the hook makes, recorded instead of slept."""
    calls: list[float] = []
    monkeypatch.setattr(hooks.time, "sleep", calls.append)
    return calls


def _run_steps(callbacks: list, steps: int, tmp_path, resumed_at: int = 0) -> None:
    """Drive the callbacks through transformers' own handler as Trainer does: begin, steps, end
    (a resumed run begins with its checkpoint's global step restored)."""
    handler = CallbackHandler(callbacks, None, None, None, None)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    state, control = TrainerState(global_step=resumed_at), TrainerControl()
    handler.on_train_begin(args, state, control)
    for _ in range(steps):
        handler.on_step_begin(args, state, control)
        handler.on_substep_end(args, state, control)
        state.global_step += 1
        handler.on_step_end(args, state, control)
        handler.on_log(args, state, control, logs={"loss": 1.0})
        handler.on_save(args, state, control)
    handler.on_train_end(args, state, control)


def test_a_fresh_run_sleeps_once_after_each_step(sleeps, tmp_path, capsys):
    _run_steps([step_delay_callback(2.5)], 4, tmp_path)
    assert f"{STEP_DELAY_ENV}=2.5: sleeping after each step" in capsys.readouterr().out
    assert sleeps == [2.5, 2.5, 2.5, 2.5]


def test_a_resumed_run_does_not_sleep(sleeps, tmp_path, capsys):
    _run_steps([step_delay_callback(2)], 3, tmp_path, resumed_at=10)
    assert f"{STEP_DELAY_ENV}=2: not applied (resuming)" in capsys.readouterr().out
    assert sleeps == []


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_value_that_is_not_a_delay_is_refused(raw):
    with pytest.raises(ValueError, match=STEP_DELAY_ENV):
        hooks.install({STEP_DELAY_ENV: raw})


def _sft_callbacks(env: dict) -> list[str]:
    """The class names of the package's SFT callbacks, as a subprocess with `env` sees them."""
    code = (
        "from codeift.train import sft\n"
        "print(' '.join(type(c).__name__ for c in sft.checkpoint_callbacks()))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


@pytest.mark.slow  # two fresh processes import TRL and torch (13 s)
def test_the_step_delay_reaches_sft_only_where_a_test_asks_for_it():
    plain = _sft_callbacks(hooked_env())
    delayed = _sft_callbacks(hooked_env(step_seconds=2))
    assert "StepDelay" not in plain
    assert sorted(delayed) == sorted([*plain, "StepDelay"])
