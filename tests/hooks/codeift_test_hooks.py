"""Test-only hooks, injected into the subprocesses the slow tests start (tests/hooks/
sitecustomize.py runs `install` there), never part of the package, a job's settings or params:
they cannot change a model, a record or what Snakemake reruns.

- STEP_DELAY_ENV: seconds to sleep after each optimizer step of an SFT run that starts from
  scratch, so a test can make an SFT job outlast a time limit or a checkpoint whatever the
  machine's speed. A run that resumes from a checkpoint does not sleep, so a retry runs at the
  machine's own speed. The hook adds its callback to codeift.train.sft.checkpoint_callbacks.
- FAKE_ENGINE_ENV: seconds each batch of the fake engine takes, as long as a real model's (the
  engine-sharing tests). The hook wraps codeift.infer.engines.FakeEngine.chat.
- EXIT_ONCE_ENV: a marker file's path; the first engine daemon that loads its engine while the
  marker is absent creates it and exits cleanly (code 0), as an engine evicted by another job
  while starting does. The hook wraps codeift.infer.engines.load_engine.

`hooked_env` gives a subprocess environment with the hooks on; tests of this process use
`step_delay_callback` and `slow_fake_engine` directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

STEP_DELAY_ENV = "CODEIFT_TEST_SFT_STEP_SECONDS"
FAKE_ENGINE_ENV = "CODEIFT_TEST_FAKE_ENGINE_SECONDS"
EXIT_ONCE_ENV = "CODEIFT_TEST_ENGINE_EXIT_ONCE"
HOOK_VARIABLES = (STEP_DELAY_ENV, FAKE_ENGINE_ENV, EXIT_ONCE_ENV)
HOOKS_DIR = Path(__file__).resolve().parent


def seconds_from(name: str, raw: str) -> float:
    """A delay from its variable; ValueError (naming it) unless a number >= 0."""
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds") from None
    if not seconds >= 0:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds >= 0")
    return seconds


def step_delay_callback(seconds: float) -> Any:
    """A trainer callback that sleeps `seconds` after each optimizer step, unless the run
    resumed (a restored global step when training begins). Says in the log which it does."""
    from transformers import TrainerCallback

    class StepDelay(TrainerCallback):
        active = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.active = state.global_step == 0
            what = "sleeping after each step" if self.active else "not applied (resuming)"
            print(f"[codeift] {STEP_DELAY_ENV}={seconds:g}: {what}", flush=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.active:
                time.sleep(seconds)

    return StepDelay()


def _delay_steps(module: ModuleType, seconds: float) -> None:
    original = module.checkpoint_callbacks

    def with_delay() -> list[Any]:
        return [step_delay_callback(seconds), *original()]

    module.checkpoint_callbacks = with_delay


def slow_fake_engine(module: ModuleType, seconds: float) -> None:
    """Make each FakeEngine batch of `module` (codeift.infer.engines) take `seconds` more."""
    original = module.FakeEngine.chat

    def chat(self: Any, conversations: list, max_new_tokens: int) -> list:
        time.sleep(seconds)
        return original(self, conversations, max_new_tokens)

    module.FakeEngine.chat = chat


def exit_once(module: ModuleType, marker: Path) -> None:
    """The first engine load of `module` (codeift.infer.engines) while `marker` is absent
    creates it and ends the process cleanly instead."""
    original = module.load_engine

    def load_engine(*args: Any, **kwargs: Any) -> Any:
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return original(*args, **kwargs)
        print("[test hook] engine stopped while starting", flush=True)
        sys.exit(0)

    module.load_engine = load_engine


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch on a module right after it is first imported."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = self.patches.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(environ: Mapping[str, str] = os.environ) -> None:
    """The hooks `environ` asks for, applied as their modules are imported."""
    patches: dict[str, Callable[[ModuleType], None]] = {}
    if raw := environ.get(STEP_DELAY_ENV, "").strip():
        seconds = seconds_from(STEP_DELAY_ENV, raw)
        patches["codeift.train.sft"] = lambda module: _delay_steps(module, seconds)
    engine_patches: list[Callable[[ModuleType], None]] = []
    if raw := environ.get(FAKE_ENGINE_ENV, "").strip():
        engine_seconds = seconds_from(FAKE_ENGINE_ENV, raw)
        engine_patches.append(lambda module: slow_fake_engine(module, engine_seconds))
    if raw := environ.get(EXIT_ONCE_ENV, "").strip():
        engine_patches.append(lambda module: exit_once(module, Path(raw)))
    if engine_patches:
        patches["codeift.infer.engines"] = lambda module: [p(module) for p in engine_patches]
    if patches:
        sys.meta_path.insert(0, _AfterImport(patches))


def hooked_env(
    base: Mapping[str, str] = os.environ,
    step_seconds: float | None = None,
    fake_engine_seconds: float | None = None,
    exit_once_marker: Path | None = None,
) -> dict[str, str]:
    """`base` with tests/hooks first on PYTHONPATH and the hooks asked for set (any left in
    `base` removed), for a subprocess."""
    env = {k: v for k, v in base.items() if k not in HOOK_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(HOOKS_DIR), env.get("PYTHONPATH", "")) if part
    )
    if step_seconds is not None:
        env[STEP_DELAY_ENV] = str(step_seconds)
    if fake_engine_seconds is not None:
        env[FAKE_ENGINE_ENV] = str(fake_engine_seconds)
    if exit_once_marker is not None:
        env[EXIT_ONCE_ENV] = str(exit_once_marker)
    return env


def use_hooks(monkeypatch: Any, **delays: float) -> None:
    """`hooked_env` for the subprocesses this test process starts (engine daemons, Snakemake),
    through pytest's monkeypatch: PYTHONPATH and the hooks (hooked_env's keywords)."""
    for key, value in hooked_env(os.environ, **delays).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
