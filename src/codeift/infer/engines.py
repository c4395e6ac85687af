"""Generation engines behind one contract: vLLM offline (`LLM.chat`, greedy), a transformers
fallback, and a deterministic fake that loads no model (tests of generation, the engine server
and the analysis).

Every engine takes a list of conversations and returns one Generation per conversation, rendered
through the model's own chat template, so the untuned base and the tuned variants see identical
prompts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from codeift.errors import BackboneError, ConfigError
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


def cuda_available() -> bool:
    """Whether this process can use a CUDA GPU, asked of torch (what vLLM and training use).
    `nvidia-smi` on PATH says neither: a cluster node has it with no GPU allotted to the job
    (CUDA_VISIBLE_DEVICES empty), and a container may see its GPU without the tool."""
    import torch

    return bool(torch.cuda.is_available())


def configure_cpu_environment(threads: int | None, cpu_kvcache_gib: int) -> None:
    """vLLM on CPU needs an explicit KV-cache size and thread binding
    (`inference.cpu_kvcache_gib` and `inference.threads`, docs/configuration.md)."""
    if cuda_available():
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


# A user turn whose content cannot occur in a template: where it lands in the rendered prompt
# splits the text into what opens the user turn and what opens the assistant's.
_PROBE_CONTENT = "codeift-role-probe-5981"
BASE_VARIANT = "base"


def role_markers(tokenizer: Any) -> tuple[str, str]:
    """(user marker, assistant marker) of a tokenizer's chat template: the line that opens the
    user turn and the one that opens the generation, found by rendering one probe turn. A
    default system prompt, BOS and the end-of-turn text before the assistant line are left out
    (each marker is the last line before the turn's content)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": _PROBE_CONTENT}], tokenize=False, add_generation_prompt=True
    )
    if _PROBE_CONTENT not in text:
        raise ConfigError(f"chat template of {tokenizer.name_or_path}: a user turn is not rendered")
    before, after = text.split(_PROBE_CONTENT, 1)
    bos = tokenizer.bos_token or ""

    def last_line(part: str) -> str:
        lines = [line.strip() for line in part.strip().splitlines() if line.strip()]
        line = lines[-1] if lines else ""
        return line[len(bos) :] if bos and line.startswith(bos) else line

    return last_line(before), last_line(after)


def role_marker_stops(tokenizer: Any) -> tuple[str, ...]:
    """Where an untuned base model's reply ends: at the text every role marker of its template
    starts with (`<|` for the study's `<|user|>`/`<|assistant|>`, `<|im_start|>` for ChatML,
    `<start_of_turn>` for Gemma's). A base model goes on to write the next turn, under the
    template's roles or one it invents (`<|admin|>`, seen on Gemma 3 270M), and extraction would
    read that turn. Where the markers share no prefix of two or more characters, the user
    marker itself (the next turn's opening)."""
    user, assistant = role_markers(tokenizer)
    prefix = os.path.commonprefix([user, assistant]).strip()
    if len(prefix) >= 2:
        return (prefix,)
    return (user,) if user else ()


def base_model_settings(
    settings: InferenceSettings, model_dir: str, variant: str
) -> InferenceSettings:
    """The settings an untuned base model generates with: its configured stop strings plus its
    template's role-marker stop (`inference.base_role_stop`, on by default), so the base line of
    a study is not biased low by a reply that runs on into an imagined next turn. Tuned variants
    end their turn with the template's end-of-turn token and keep their settings."""
    if variant != BASE_VARIANT or not settings.base_role_stop:
        return settings
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # a broken tokenizer file: name the folder, not a bare KeyError
        raise BackboneError(
            f"base model {model_dir}: its tokenizer cannot be read to derive the role-marker "
            f"stop ({type(error).__name__}: {error}); fix the folder, or set "
            f"inference.base_role_stop: false"
        ) from error
    if not tokenizer.chat_template:
        return settings
    extra = [marker for marker in role_marker_stops(tokenizer) if marker not in settings.stop]
    return dataclasses.replace(settings, stop=(*settings.stop, *extra))


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The reply up to the first stop string, as vLLM returns it (the stop string not kept)."""
    ends = [index for index in (text.find(marker) for marker in stop) if index >= 0]
    return text[: min(ends)] if ends else text


def stopped_generation(
    text: str, stop: list[str], ended: bool, n_prompt_tokens: int, n_response_tokens: int
) -> Generation:
    """A reply decoded outside vLLM, cut and labelled the way vLLM would: cut at the first stop
    string, and "stop" if the model ended it (end of sequence) or a stop string cut it, else
    "length" (it ran out of new tokens). One rule, so the hf and fake engines cannot drift apart."""
    response = cut_at_stop(text, stop)
    return Generation(
        response=response,
        n_prompt_tokens=n_prompt_tokens,
        n_response_tokens=n_response_tokens,
        finish_reason="stop" if ended or response != text else "length",
    )


def build_vllm(
    model: str,
    settings: InferenceSettings | LabellerSettings,
    max_num_seqs: int | None,
    tensor_parallel_size: int,
) -> Any:
    """vLLM's offline LLM for a model folder or hub id: the one builder that generation and the
    LLM-judge labeller share (CPU environment, executor, seed, memory settings)."""
    configure_cpu_environment(settings.threads, settings.cpu_kvcache_gib)
    import torch
    import vllm

    on_cpu = not cuda_available()
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
                results.append(
                    stopped_generation(text, self.stop, finished, int(mask.sum()), len(new_tokens))
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
        replies = []
        for conversation in conversations:
            prompt = "\n".join(turn["content"] for turn in conversation)
            digest = hashlib.sha256(f"{self.model_dir}\0{prompt}".encode()).hexdigest()
            words = f"The answer is {int(digest[:6], 16) % 100}.".split()
            kept = words[:max_new_tokens]
            replies.append(
                stopped_generation(
                    " ".join(kept),
                    self.stop,
                    len(kept) == len(words),
                    len(prompt.split()),
                    len(kept),
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
