"""A character-level GPT (decoder-only Transformer) on tiny-shakespeare, after nanoGPT's
shakespeare_char: context 64, d_model 128, 4 heads, 4 pre-LayerNorm layers, GELU MLP 512.

Shape letters: B batch, T time (context), C model width, V vocabulary (65 characters).

    tinygrad-lab train shakespeare-gpt --save gpt.npz
    tinygrad-lab sample gpt.npz --length 500 --prompt "ROMEO:"
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinygrad_lab import datasets, helpers, nn, optim, schedulers
from tinygrad_lab.function import no_grad
from tinygrad_lab.nn import functional as F
from tinygrad_lab.nn import init
from tinygrad_lab.random import manual_seed
from tinygrad_lab.tensor import Tensor


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int = 512
    dropout: float = 0.0


class GPT(nn.Module):
    """Token + learned position embeddings, `num_layers` causal pre-LN TransformerBlocks, a
    final LayerNorm and a linear head to the vocabulary (GPT-2's layout, untied head).

    Weights start as in GPT-2: N(0, 0.02), the two projections into the residual stream scaled
    by 1 / sqrt(2 * num_layers); biases 0, LayerNorm gains 1.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.wte = nn.Embedding(c.vocab_size, c.d_model)  # weight (V, C)
        self.wpe = nn.LearnedPositionalEmbedding(c.block_size, c.d_model)
        self.blocks = [nn.TransformerBlock(c.d_model, c.num_heads, c.d_ff, c.dropout, causal=True)
                       for _ in range(c.num_layers)]
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        residual_std = 0.02 / math.sqrt(2 * c.num_layers)
        for block in self.blocks:
            for linear, std in ((block.attn.qkv, 0.02), (block.attn.proj, residual_std),
                                (block.fc, 0.02), (block.fc_out, residual_std)):
                linear.weight.data[...] = init.normal(std, linear.weight.shape)
        for table in (self.wte.weight, self.head.weight):
            table.data[...] = init.normal(0.02, table.shape)

    def forward(self, idx: Any) -> Tensor:
        """idx (B, T) integer token ids, T <= block_size -> logits (B, T, V)."""
        idx = np.asarray(idx)
        t = idx.shape[-1]
        if t > self.config.block_size:
            raise ValueError(f"GPT: {t} tokens exceed the block size {self.config.block_size}")
        x = self.wpe(self.wte(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        b, c = x.shape[0], x.shape[2]
        logits = self.head(self.ln_f(x).reshape(b * t, c))  # (B*T, C) -> (B*T, V)
        return logits.reshape(b, t, -1)  # (B, T, V)


# --- data ---------------------------------------------------------------------------------------
def get_batch(ids: np.ndarray, batch: int, context: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random windows: x (B, T) and the next characters y (B, T)."""
    starts = rng.integers(0, len(ids) - context - 1, size=batch)
    offsets = starts[:, None] + np.arange(context)[None, :]  # (B, T)
    return ids[offsets], ids[offsets + 1]


def fixed_batches(ids: np.ndarray, n: int, batch: int, context: int,
                  seed: int = 1234) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same held-out windows every evaluation, so val losses compare across steps."""
    rng = np.random.default_rng(seed)
    return [get_batch(ids, batch, context, rng) for _ in range(n)]


def evaluate(model: GPT, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean cross-entropy (nats per character) over the batches, without building a graph."""
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [F.cross_entropy(model(x), y).item() for x, y in batches]
    model.train(was_training)
    return float(np.mean(losses))


def build_schedules(opts: list[optim.AdamW], warmup: int, steps: int) -> list[Any]:
    """Per optimizer: linear warm-up over `warmup` steps, then cosine decay to a tenth of the
    peak learning rate at the last step (nanoGPT's schedule)."""
    out = []
    for opt in opts:
        cosine = schedulers.CosineAnnealingLR(opt, T_max=max(1, steps - warmup),
                                              eta_min=opt.lr / 10)
        if warmup == 0:
            out.append(cosine)
            continue
        ramp = schedulers.LinearWarmup(opt, warmup)
        out.append(schedulers.SequentialLR(opt, [ramp, cosine], milestones=[warmup]))
    return out


# --- command line -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context", type=int, default=64, help="block size (characters)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=0, help="MLP width (0 = 4 * d-model)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=0.1,
                        help="AdamW decay of the weight matrices (not biases, gains, embeddings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=20,
                        help="fixed held-out batches of 32 windows for the validation loss")
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) here")


def check_arguments(args: argparse.Namespace) -> None:
    """Reject bad settings before any data is loaded, naming the flag and the value."""
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--context", args.context), ("--d-model", args.d_model),
                        ("--heads", args.heads), ("--layers", args.layers),
                        ("--eval-every", args.eval_every), ("--eval-batches", args.eval_batches)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.d_model % args.heads:
        raise ValueError(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.d_ff < 0 or args.warmup < 0 or args.weight_decay < 0:
        raise ValueError("--d-ff, --warmup and --weight-decay must be >= 0")


def build_optimizers(model: GPT, lr: float, weight_decay: float) -> list[optim.AdamW]:
    """AdamW, betas (0.9, 0.99) as nanoGPT's shakespeare_char; decay on weight matrices only."""
    matrices = [p for name, p in model.named_parameters() if name.endswith("weight")
                and p.ndim == 2 and name not in ("wte.weight", "wpe.weight")]
    others = [p for p in model.parameters() if all(p is not m for m in matrices)]
    return [optim.AdamW(matrices, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay),
            optim.AdamW(others, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)]


def train_step(model: GPT, opts: list[optim.AdamW], x: np.ndarray, y: np.ndarray,
               clip: float = 1.0) -> float:
    loss = F.cross_entropy(model(x), y)  # logits (B, T, V), labels (B, T)
    for opt in opts:
        opt.zero_grad()
    loss.backward()
    optim.clip_grad_norm_(model.parameters(), clip)
    for opt in opts:
        opt.step()
    return loss.item()


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_arguments(args)
    manual_seed(args.seed)
    train_ids, val_ids, vocab = datasets.load_shakespeare_chars(0.1)
    config = GPTConfig(vocab_size=vocab.size, block_size=args.context, d_model=args.d_model,
                       num_heads=args.heads, num_layers=args.layers,
                       d_ff=args.d_ff or 4 * args.d_model, dropout=args.dropout)
    model = GPT(config)
    opts = build_optimizers(model, args.lr, args.weight_decay)
    rng = np.random.default_rng(args.seed)
    held_out = fixed_batches(val_ids, args.eval_batches, 32, args.context)
    tokens = args.batch_size * args.context
    print(f"shakespeare-gpt: {model.num_parameters():,} parameters; {config}; AdamW lr "
          f"{args.lr} (warm-up {args.warmup}, cosine), batch {args.batch_size}, {args.steps} "
          f"steps, {helpers.num_threads()} threads, kernels "
          f"{'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}", flush=True)
    train_seconds, window_loss, window_steps, val_loss = 0.0, 0.0, 0, float("nan")
    history: list[dict[str, float]] = []
    start_all = time.perf_counter()
    schedules = build_schedules(opts, args.warmup, args.steps)
    for step in range(args.steps):
        x, y = get_batch(train_ids, args.batch_size, args.context, rng)
        start = time.perf_counter()
        loss = train_step(model, opts, x, y)
        train_seconds += time.perf_counter() - start
        for schedule in schedules:
            schedule.step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step {step + 1}")
        window_loss, window_steps = window_loss + loss, window_steps + 1
        last = step + 1 == args.steps
        if (step + 1) % args.eval_every == 0 or last:
            val_loss = evaluate(model, held_out)
            rate = tokens * (step + 1) / train_seconds
            history.append({"step": step + 1, "train_loss": window_loss / window_steps,
                            "val_loss": val_loss})
            print(f"step {step + 1:>6}: train loss {window_loss / window_steps:.4f}, val loss "
                  f"{val_loss:.4f}, {rate:,.0f} tokens/s, {time.perf_counter() - start_all:.0f} s",
                  flush=True)
            window_loss, window_steps = 0.0, 0
    wall = time.perf_counter() - start_all
    print(f"final val loss {val_loss:.4f} nats/char after {args.steps} steps, {wall:.0f} s wall, "
          f"{tokens * args.steps / train_seconds:,.0f} training tokens/s", flush=True)
    if args.save:
        from tinygrad_lab.serialization import save_checkpoint

        meta = {"recipe": "shakespeare-gpt", "config": asdict(config),
                "vocab": "".join(vocab.itos), "steps": args.steps, "val_loss": val_loss}
        save_checkpoint(args.save, model.state_dict(), meta)
        print(f"checkpoint written to {args.save}")
    return {"val_loss": val_loss, "wall_seconds": wall, "history": history,
            "tokens_per_second": tokens * args.steps / train_seconds}


# --- sampling -----------------------------------------------------------------------------------
def generate(model: GPT, ids: np.ndarray, length: int, temperature: float = 1.0,
             top_k: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Append `length` sampled ids to ids (T0,), each from the logits of the last
    block_size ids, divided by temperature, restricted to the top_k likeliest (0 = all)."""
    rng = rng or np.random.default_rng()
    out = [int(i) for i in ids]
    block = model.config.block_size
    was_training = model.training
    model.eval()
    with no_grad():
        for _ in range(length):
            context = np.asarray(out[-block:], dtype=np.int64)[None, :]  # (1, T)
            logits = model(context).numpy()[0, -1].astype(np.float64) / temperature  # (V,)
            if 0 < top_k < logits.size:
                cutoff = np.partition(logits, -top_k)[-top_k]
                logits = np.where(logits < cutoff, -np.inf, logits)
            p = np.exp(logits - logits.max())
            out.append(int(rng.choice(p.size, p=p / p.sum())))
    model.train(was_training)
    return np.asarray(out, dtype=np.int64)


def sample(state: dict[str, np.ndarray], meta: dict[str, Any], args: argparse.Namespace) -> str:
    """Rebuild the model a checkpoint describes and return prompt + args.length sampled chars."""
    config = GPTConfig(**meta["config"])
    model = GPT(config)
    model.load_state_dict(state)
    vocab = datasets.CharVocab(meta["vocab"])
    prompt = args.prompt if args.prompt else "\n"
    ids = vocab.encode(prompt)
    rng = np.random.default_rng(args.seed)
    out = generate(model, ids, args.length, args.temperature, args.top_k, rng)
    return vocab.decode(out)
