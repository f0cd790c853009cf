"""One benchmark run of Python mlx-vlm 0.7.6, as its `generate` CLI runs.

Prints one JSON line (the fields of `mlx-vlm-bench measure`):

    load_s          time of `mlx_vlm.load`
    ttft_s          from just before the chat template, image (and video,
                    audio) loading and processing to the first streamed
                    token
    prompt_tokens, prompt_tps, generation_tokens, generation_tps
                    as the last streamed response reports them
    peak_memory_gb  mx.get_peak_memory() / 1e9
    peak_rss_mb     ru_maxrss (KB on Linux, bytes on macOS) in MB
    token_ids       the generated ids

The arguments go through the CLI's own parser (`parse_arguments`), and the
model, template and generation keyword arguments are built exactly as
`mlx_vlm.generate.dispatch.main` builds them, so defaults stay the CLI's.

    HF_HUB_OFFLINE=1 python tools/bench/measure.py --model DIR \
        --image IMG --prompt "Describe this image." --max-tokens 64
"""

import json
import resource
import sys
import time


def peak_rss_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return rss / 1e6 if sys.platform == "darwin" else rss / 1e3


def patch_llava_processor():
    """Python mlx-vlm 0.7.6's LlavaProcessor hands the tokenizer's
    `padding=True` to transformers 5.23's CLIPImageProcessor, which refuses
    it: every LLaVA image prompt fails. Drop that one keyword, as the
    goldens do (mlx-vlm/tests/fixtures/llava/gen_goldens.py) and as
    LlavaNextProcessor does itself; for one prompt it changes nothing."""
    from mlx_vlm.models.llava.processing_llava import LlavaProcessor

    original = LlavaProcessor.__call__

    def call(self, images=None, text=None, **kwargs):
        kwargs.pop("padding", None)
        return original(self, images=images, text=text, **kwargs)

    LlavaProcessor.__call__ = call


def main():
    import mlx.core as mx
    from mlx_vlm import load
    from mlx_vlm.generate.dispatch import (
        _video_sampling_kwargs,
        parse_arguments,
        stream_generate,
    )
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.generate.common import DEFAULT_KV_QUANT_SCHEME

    # Greedy unless the caller says otherwise; argparse keeps the last value.
    sys.argv = [sys.argv[0], "--temperature", "0"] + sys.argv[1:]
    args = parse_arguments()
    if isinstance(args.image, str):
        args.image = [args.image]
    if isinstance(args.video, str):
        args.video = [args.video]
    if isinstance(args.audio, str):
        args.audio = [args.audio]
    if args.seed is not None:
        mx.random.seed(args.seed)

    tic = time.perf_counter()
    model, processor = load(
        args.model,
        args.adapter_path,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        quantize_activations=args.quantize_activations,
        expert_cache_gb=args.expert_cache_gb,
        max_kv_size=args.max_kv_size,
    )
    load_s = time.perf_counter() - tic
    config = model.config
    if config.model_type == "llava":
        patch_llava_processor()

    tic = time.perf_counter()
    prompt = args.prompt
    if args.system:
        prompt = [{"role": "system", "content": args.system}] + (
            prompt if isinstance(prompt, list) else [prompt]
        )
    num_images = len(args.image) if args.image is not None else 0
    num_audios = len(args.audio) if args.audio is not None else 0
    chat_template_kwargs = {"enable_thinking": args.enable_thinking}
    if args.thinking_mode is not None:
        chat_template_kwargs["thinking_mode"] = args.thinking_mode
    if args.video:
        # Native video only (every Qwen family), as the CLI passes it.
        chat_template_kwargs["video"] = args.video
        chat_template_kwargs["fps"] = args.fps
    prompt = apply_chat_template(
        processor,
        config,
        prompt,
        num_images=num_images,
        num_audios=num_audios,
        **chat_template_kwargs,
    )
    gen_kwargs = {
        "image": args.image,
        "audio": args.audio,
        "video": args.video,
        **_video_sampling_kwargs(args),
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "max_tokens": args.max_tokens,
        "repetition_penalty": args.repetition_penalty,
        "repetition_context_size": args.repetition_context_size,
        "presence_penalty": args.presence_penalty,
        "presence_context_size": args.presence_context_size,
        "frequency_penalty": args.frequency_penalty,
        "frequency_context_size": args.frequency_context_size,
        "max_kv_size": args.max_kv_size,
        "kv_bits": args.kv_bits,
        "kv_key_bits": getattr(args, "kv_key_bits", None),
        "kv_value_bits": getattr(args, "kv_value_bits", None),
        "kv_key_scheme": getattr(args, "kv_key_scheme", None),
        "kv_value_scheme": getattr(args, "kv_value_scheme", None),
        "kv_group_size": args.kv_group_size,
        "kv_quant_scheme": getattr(args, "kv_quant_scheme", DEFAULT_KV_QUANT_SCHEME),
        "quantized_kv_start": args.quantized_kv_start,
        "enable_thinking": args.enable_thinking,
    }
    if args.prefill_step_size is not None:
        gen_kwargs["prefill_step_size"] = args.prefill_step_size
    # What `generate` does before streaming.
    tokenizer = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    tokenizer.stopping_criteria.reset(model.config.eos_token_id)

    ttft_s = None
    last = None
    for response in stream_generate(model, processor, prompt, **gen_kwargs):
        if ttft_s is None:
            ttft_s = time.perf_counter() - tic
        last = response

    print(
        json.dumps(
            {
                "impl": "python",
                "load_s": load_s,
                "ttft_s": ttft_s,
                "prompt_tokens": last.prompt_tokens,
                "prompt_tps": last.prompt_tps,
                "generation_tokens": last.generation_tokens,
                "generation_tps": last.generation_tps,
                "peak_memory_gb": mx.get_peak_memory() / 1e9,
                "peak_rss_mb": peak_rss_mb(),
                "token_ids": [int(t) for t in (last.token_ids or [])],
            }
        )
    )


if __name__ == "__main__":
    main()
