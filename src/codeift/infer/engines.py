"""Generation engines behind one contract: vLLM offline (`LLM.chat`, greedy), a transformers
fallback, and a deterministic fake that loads no model (tests of generation, the engine server
and the analysis).

Every engine takes a list of conversations and returns one Generation per conversation, rendered
through the model's own chat template, so the untuned base and the tuned variants see identical
prompts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from codeift.errors import ConfigError
from codeift.settings import InferenceSettings, LabellerSettings

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    """One greedy reply; `finish_reason` is "stop", "length" or what the engine reports.
    `n_cached_tokens`: prompt tokens whose keys and values came from vLLM's prefix cache, not
    computed (a cost figure only: not written to generation outputs)."""

    response: str
    n_prompt_tokens: int
    n_response_tokens: int
    finish_reason: str
    n_cached_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine(Protocol):
    name: str
    version: str

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        """Greedy replies, one per conversation, in order."""
        ...


def configure_cpu_environment(threads: int | None, cpu_kvcache_gib: int) -> None:
    """vLLM on CPU needs an explicit KV-cache size and thread binding (see ENVIRONMENT.md)."""
    if shutil.which("nvidia-smi"):
        return
    cores = os.cpu_count() or 1
    threads = int(threads or cores)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kvcache_gib))
    # Binding every engine to cores 0..n-1 would stack engines that share a machine on one core.
    bind = f"0-{threads - 1}" if threads >= cores else "nobind"
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
    # One process instead of three (front end, engine core, worker): measured here, start-up
    # fell from 40-80 s to ~13 s for a tiny model.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The reply up to the first stop string, as vLLM returns it (the stop string not kept)."""
    ends = [index for index in (text.find(marker) for marker in stop) if index >= 0]
    return text[: min(ends)] if ends else text


def build_vllm(
    model: str,
    settings: InferenceSettings | LabellerSettings,
    max_num_seqs: int | None = None,
    tensor_parallel_size: int = 1,
) -> Any:
    """vLLM's offline LLM for a model folder or hub id: the one builder that generation and the
    LLM-judge labeller share (CPU environment, executor, seed, memory settings)."""
    configure_cpu_environment(settings.threads, settings.cpu_kvcache_gib)
    import torch
    import vllm

    on_cpu = not shutil.which("nvidia-smi")
    if on_cpu:
        # OMP_NUM_THREADS is read when torch is first imported, which may have been before the
        # line above; unbound ("nobind"), vLLM keeps torch's count: measured here, an engine
        # set to 1 thread ran on 2 without this.
        torch.set_num_threads(int(settings.threads or os.cpu_count() or 1))
    single = tensor_parallel_size == 1
    executor = {"distributed_executor_backend": "uni"} if on_cpu and single else {}
    batch = {"max_num_seqs": max_num_seqs} if max_num_seqs else {}
    parallel = {"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size > 1 else {}
    return vllm.LLM(
        model=model,
        tokenizer=model,
        dtype=settings.dtype,
        seed=0,
        enforce_eager=settings.enforce_eager,
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        **batch,
        **parallel,
        **executor,
    )


class VllmEngine:
    """vLLM's offline LLM; one engine serves every task of one model."""

    name = "vllm"

    def __init__(self, model_dir: str, settings: InferenceSettings) -> None:
        import vllm

        self.version = vllm.__version__
        self._vllm = vllm
        self.llm = build_vllm(
            model_dir, settings, settings.max_num_seqs, settings.tensor_parallel_size
        )
        self.stop = list(settings.stop) or None

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        params = self._vllm.SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, seed=0, stop=self.stop
        )
        outputs = self.llm.chat(conversations, params, use_tqdm=True, add_generation_prompt=True)
        return [
            Generation(
                response=output.outputs[0].text,
                n_prompt_tokens=len(output.prompt_token_ids or []),
                n_response_tokens=len(output.outputs[0].token_ids),
                finish_reason=output.outputs[0].finish_reason or "unknown",
                n_cached_tokens=int(output.num_cached_tokens or 0),
            )
            for output in outputs
        ]


class HfEngine:
    """transformers `generate`, greedy, left-padded batches: the fallback where vLLM is absent."""

    name = "hf"

    def __init__(self, model_dir: str, settings: InferenceSettings) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.version = transformers.__version__
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(int(settings.threads))
        dtype = settings.dtype
        torch_dtype = (
            torch.float32
            if dtype == "auto" and self.device == "cpu"
            else ("auto" if dtype == "auto" else getattr(torch, dtype))
        )
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(
            self.device
        )
        self.model.eval()
        self.batch_size = int(settings.batch_size)
        self.stop = list(settings.stop)
        self.stop_arguments = (
            {"stop_strings": self.stop, "tokenizer": self.tokenizer} if self.stop else {}
        )

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        from tqdm import tqdm

        results: list[Generation] = []
        for start in tqdm(range(0, len(conversations), self.batch_size), desc="generate (hf)"):
            batch = conversations[start : start + self.batch_size]
            texts = [
                self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in batch
            ]
            encoded = self.tokenizer(
                texts, return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with self.torch.no_grad():
                generated = self.model.generate(
                    **encoded,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **self.stop_arguments,
                )
            prompt_width = encoded["input_ids"].shape[1]
            for row, mask in zip(generated, encoded["attention_mask"], strict=False):
                new_tokens = row[prompt_width:].tolist()
                eos = self.tokenizer.eos_token_id
                finished = eos in new_tokens
                if finished:
                    new_tokens = new_tokens[: new_tokens.index(eos)]
                while new_tokens and new_tokens[-1] == self.tokenizer.pad_token_id:
                    new_tokens.pop()
                text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
                cut = cut_at_stop(text, self.stop)
                results.append(
                    Generation(
                        response=cut,
                        n_prompt_tokens=int(mask.sum()),
                        n_response_tokens=len(new_tokens),
                        finish_reason="stop" if finished or cut != text else "length",
                    )
                )
        return results


class FakeEngine:
    """Loads no model: each reply is a fixed function of the model folder and the conversation
    (a sentence with "The answer is N"), so tests of generation, sharing and analysis are fast
    and deterministic and still see distinct replies per prompt and per model."""

    name = "fake"
    version = "1"

    def __init__(self, model_dir: str, settings: InferenceSettings) -> None:
        self.model_dir = str(model_dir)
        self.stop = list(settings.stop)

    def chat(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        # Test-only: a batch that takes as long as a real model's (the engine-sharing tests).
        time.sleep(float(os.environ.get("CODEIFT_TEST_FAKE_ENGINE_SECONDS", "0")))
        replies = []
        for conversation in conversations:
            prompt = "\n".join(turn["content"] for turn in conversation)
            digest = hashlib.sha256(f"{self.model_dir}\0{prompt}".encode()).hexdigest()
            words = f"The answer is {int(digest[:6], 16) % 100}.".split()
            kept = words[:max_new_tokens]
            text = " ".join(kept)
            response = cut_at_stop(text, self.stop)
            replies.append(
                Generation(
                    response=response,
                    n_prompt_tokens=len(prompt.split()),
                    n_response_tokens=len(kept),
                    finish_reason="stop"
                    if len(kept) == len(words) or response != text
                    else "length",
                )
            )
        return replies


ENGINES: dict[str, type] = {"vllm": VllmEngine, "hf": HfEngine, "fake": FakeEngine}


def load_engine(model_dir: str, settings: InferenceSettings) -> Engine:
    name = settings.engine
    if name not in ENGINES:
        raise ConfigError(
            f"config key 'inference.engine': {name!r} is not an engine (allowed: {sorted(ENGINES)})"
        )
    return ENGINES[name](model_dir, settings)
