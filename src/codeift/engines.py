"""Generation engines: vLLM offline (`LLM.chat`, greedy) and a transformers fallback.

Both take a list of conversations and return one result per conversation, rendered through the
model's own chat template, so the untuned base and the tuned variants see identical prompts.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

GenerationResult = dict[str, Any]


def configure_cpu_environment(settings: dict[str, Any]) -> None:
    """vLLM on CPU needs an explicit KV-cache size and thread binding (see ENVIRONMENT.md)."""
    if shutil.which("nvidia-smi"):
        return
    cores = os.cpu_count() or 1
    threads = int(settings.get("threads", cores))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.get("cpu_kvcache_gib", 1)))
    # Binding every engine to cores 0..n-1 would stack engines that share a machine on one core.
    bind = f"0-{threads - 1}" if threads >= cores else "nobind"
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
    # One process instead of three (front end, engine core, worker): measured here, start-up
    # fell from 40-80 s to ~13 s for a tiny model.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


class VllmEngine:
    """vLLM's offline LLM; one engine serves every task of one model."""

    name = "vllm"

    def __init__(self, model_dir: str, settings: dict[str, Any]) -> None:
        configure_cpu_environment(settings)
        import vllm

        self.version = vllm.__version__
        self._vllm = vllm
        on_cpu = not shutil.which("nvidia-smi")
        single = settings["tensor_parallel_size"] == 1
        executor = {"distributed_executor_backend": "uni"} if on_cpu and single else {}
        self.llm = vllm.LLM(
            model=model_dir,
            tokenizer=model_dir,
            dtype=settings["dtype"],
            seed=0,
            enforce_eager=settings["enforce_eager"],
            max_model_len=settings["max_model_len"],
            max_num_seqs=settings["max_num_seqs"],
            tensor_parallel_size=settings["tensor_parallel_size"],
            gpu_memory_utilization=settings["gpu_memory_utilization"],
            **executor,
        )

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int
    ) -> list[GenerationResult]:
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, seed=0)
        outputs = self.llm.chat(conversations, params, use_tqdm=True, add_generation_prompt=True)
        return [
            {
                "response": output.outputs[0].text,
                "n_prompt_tokens": len(output.prompt_token_ids or []),
                "n_response_tokens": len(output.outputs[0].token_ids),
                "finish_reason": output.outputs[0].finish_reason or "unknown",
            }
            for output in outputs
        ]


class HfEngine:
    """transformers `generate`, greedy, left-padded batches: the fallback where vLLM is absent."""

    name = "hf"

    def __init__(self, model_dir: str, settings: dict[str, Any]) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.version = transformers.__version__
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(int(settings.get("threads", 1)))
        dtype = settings["dtype"]
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
        self.batch_size = int(settings["batch_size"])

    def chat(
        self, conversations: list[list[dict[str, str]]], max_new_tokens: int
    ) -> list[GenerationResult]:
        from tqdm import tqdm

        results: list[GenerationResult] = []
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
                results.append(
                    {
                        "response": self.tokenizer.decode(new_tokens, skip_special_tokens=True),
                        "n_prompt_tokens": int(mask.sum()),
                        "n_response_tokens": len(new_tokens),
                        "finish_reason": "stop" if finished else "length",
                    }
                )
        return results


def load_engine(model_dir: str, settings: dict[str, Any]) -> VllmEngine | HfEngine:
    engines = {"vllm": VllmEngine, "hf": HfEngine}
    return engines[settings["engine"]](model_dir, settings)
