"""Llama-style model sizes by name, from a CPU-sized toy up to ~1B parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LlamaSize:
    """The shape of a Llama-style decoder (RMSNorm, SwiGLU, rotary positions, grouped-query attention)."""

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    tie_embeddings: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


#: Named presets. Parameter counts (non-embedding) are approximate; embeddings add vocab_size × d_model.
PRESETS: dict[str, LlamaSize] = {
    "tiny": LlamaSize(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=172),  # ~0.1M: tests
    "micro": LlamaSize(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=344),  # ~0.7M: CPU sweeps
    "mini": LlamaSize(d_model=256, n_layers=6, n_heads=8, n_kv_heads=4, ffn_hidden=688),  # ~4M
    "20m": LlamaSize(d_model=384, n_layers=8, n_heads=6, n_kv_heads=6, ffn_hidden=1024),
    "60m": LlamaSize(d_model=512, n_layers=12, n_heads=8, n_kv_heads=8, ffn_hidden=1376),
    "150m": LlamaSize(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_hidden=2048),
    "350m": LlamaSize(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=8, ffn_hidden=2816),
    "1b": LlamaSize(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_hidden=8192),
}


def llama_config(size: LlamaSize, vocab_size: int, seq_len: int, eos_token_id: int):
    """A ``transformers.LlamaConfig`` for a size, vocabulary and context length."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        intermediate_size=size.ffn_hidden,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_kv_heads,
        max_position_embeddings=seq_len,
        tie_word_embeddings=size.tie_embeddings,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        rms_norm_eps=1e-5,
        attention_dropout=0.0,
    )


def count_parameters(size: LlamaSize, vocab_size: int) -> int:
    """Parameters of the model (embeddings counted once when tied)."""
    head_dim = size.d_model // size.n_heads
    attention = size.d_model * head_dim * (2 * size.n_heads + 2 * size.n_kv_heads)
    mlp = 3 * size.d_model * size.ffn_hidden
    norms = 2 * size.d_model
    embeddings = vocab_size * size.d_model * (1 if size.tie_embeddings else 2)
    return size.n_layers * (attention + mlp + norms) + size.d_model + embeddings
