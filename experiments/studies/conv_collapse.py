"""What the gradient sees while a model trains: why a conv encoder / deconv decoder can collapse
to the prior (docs/results/cartpole.md, "The conv encoder's collapse").

Trains an experiment's model (its preset and ``--set`` changes) on a collected dataset with the
experiment's own objective, optimizer, learning-rate schedule and gradient clipping, and every
``--every`` steps measures on a fixed validation batch:

* the KL of q(z | x) to the prior N(0, I) per latent dimension (nats), largest first;
* the reconstruction's NLL (nats per image) beside the mean image's and the pixels' own floor
  (their Bernoulli entropy), and how far the reconstruction is from the mean image (RMS);
* per layer of the encoder and the decoder: the RMS of its output, the share of ReLU units dead
  on the whole batch, and the RMS of its weights' gradient.

At the end it fits the probe of ``latentrl train`` (latent means -> state, validation R^2).

    python experiments/studies/conv_collapse.py DATA --experiment cartpole --preset debug \\
        --set model.encoder=conv --set model.decoder=deconv --steps 300

Prints one block per measurement; ``--out FILE`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from latentrl.config import ExperimentConfig
from latentrl.data import TransitionDataset, load_transitions
from latentrl.errors import UserError
from latentrl.kinds import build_model, model_kind
from latentrl.losses.likelihoods import bernoulli_nll
from latentrl.models import E2C
from latentrl.models.encoder import to_unit_interval
from latentrl.pipeline import experiment_config
from latentrl.probe import fit_probe, state_features
from latentrl.training_windows import continuation, window_mask

VALIDATION_BATCH = 256


def layer_names(model: E2C) -> dict[nn.Module, str]:
    """The encoder's and decoder's weight layers (Linear, Conv2d, ConvTranspose2d) by name."""
    kinds = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    return {
        module: name
        for name, module in model.named_modules()
        if isinstance(module, kinds) and name.startswith(("encoder.", "decoder."))
    }


@torch.no_grad()
def measure(model: E2C, x: Tensor, mean_image: Tensor) -> dict[str, Any]:
    """The measurements of the module docstring on images ``x`` ``(B, k, H, W)`` uint8."""
    names = layer_names(model)
    outputs: dict[str, Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda m, _i, out: outputs.__setitem__(names[m], out.detach()))
        for module in names
    ]
    try:
        q = model.encode(x)
        decoded = model.decode(q.mean)
    finally:
        for hook in hooks:
            hook.remove()
    target = to_unit_interval(x)
    kl = kl_per_dim(q.mean, q.logvar).mean(0)
    mean_logits = torch.logit(mean_image.clamp(1e-4, 1 - 1e-4)).expand_as(target)
    layers = {}
    for name, out in outputs.items():
        units = out.transpose(0, 1).flatten(1)  # (units or channels, B * positions)
        layers[name] = {
            "out_rms": float(out.square().mean().sqrt()),
            # a unit that no sample of the batch drives above 0 passes no gradient after ReLU
            "dead_after_relu": float((units.amax(1) <= 0).float().mean()),
        }
    return {
        "kl_per_dim": sorted((float(v) for v in kl), reverse=True),
        # how much the posterior means differ between images, against the posterior's noise
        "mean_spread": float(q.mean.std(0).mean()),
        "posterior_std": float(q.std.mean()),
        "kl_total": float(kl.sum()),
        "nll": float(bernoulli_nll(decoded, target).mean()),
        "nll_mean_image": float(bernoulli_nll(mean_logits, target).mean()),
        "nll_floor": float(bernoulli_nll(torch.logit(target.clamp(1e-4, 1 - 1e-4)), target).mean()),
        "recon_vs_mean_image_rms": float(
            (torch.sigmoid(decoded) - mean_image).square().mean().sqrt()
        ),
        "layers": layers,
    }


def decoder_gain(model: E2C, x: Tensor, step: float = 0.1) -> dict[str, float]:
    """How strongly the decoder reads z, and how strongly reconstruction pulls the means apart.

    ``decoder_gain``: RMS over the batch of |decode(mu + d) - decode(mu)| / |d| in logits, for
    random directions d of length ``step``; ``recon_pull``: the spread across images of
    d(-log p(x | mu)) / d mu, the image-specific gradient that separates the posterior means
    (the KL's pull on them is the means themselves)."""
    target = to_unit_interval(x)
    with torch.no_grad():
        mu = model.encode(x).mean
        d = torch.randn_like(mu)
        d = step * d / d.norm(dim=1, keepdim=True)
        moved = (model.decode(mu + d) - model.decode(mu)).flatten(1).norm(dim=1)
    mu = mu.clone().requires_grad_(True)
    (pull,) = torch.autograd.grad(bernoulli_nll(model.decode(mu), target).sum(), mu)
    return {
        "decoder_gain": float((moved / step).square().mean().sqrt()),
        "recon_pull": float(pull.std(0).mean()),
    }


def kl_per_dim(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per dimension: ``(B, n)``."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)


def gradient_rms(model: E2C) -> dict[str, float]:
    """RMS of each encoder/decoder layer's weight gradient after a backward pass."""
    return {
        name: float(module.weight.grad.square().mean().sqrt())
        for module, name in layer_names(model).items()
        if module.weight.grad is not None
    }


def learning_rate(config: ExperimentConfig, step: int, total: int) -> float:
    """``latentrl train``'s cosine decay from train.learning_rate to final_learning_rate."""
    cfg = config.train
    progress = min(step / max(total, 1), 1.0)
    return cfg.final_learning_rate + 0.5 * (cfg.learning_rate - cfg.final_learning_rate) * (
        1.0 + math.cos(math.pi * progress)
    )


def probe_r2(
    model: E2C, train: TransitionDataset, val: TransitionDataset, steps: int
) -> dict[str, float]:
    """Validation R^2 of ``latentrl train``'s probe from latent means to the state features."""
    names, angle_dims = train.metadata["state_names"], train.metadata.get("angle_dims", [])
    y_train, labels = state_features(train.state, names, angle_dims)
    y_val, _ = state_features(val.state, names, angle_dims)
    with torch.no_grad():
        z_train, z_val = model.encode(train.obs).mean, model.encode(val.obs).mean
    r2 = fit_probe(z_train, y_train, z_val, y_val, steps=steps)
    return {label: float(v) for label, v in zip(labels, r2, strict=True)}


def batches(n: int, batch: int, count: int, order: torch.Generator) -> Iterator[Tensor]:
    """``count`` batches of row indices ``(batch,)``, epoch after epoch of permutations."""
    made = 0
    while True:
        for index in torch.randperm(n, generator=order)[: n // batch * batch].view(-1, batch):
            if made == count:
                return
            made += 1
            yield index


def study(config: ExperimentConfig, data_dir: Path, steps: int, every: int) -> list[dict[str, Any]]:
    """Train for ``steps`` steps, measuring every ``every``; the list of measurements."""
    data = load_transitions(data_dir, expect={"obs_shape": config.model.obs_shape})
    train, val = data.split(config.data.validation_fraction, seed=config.data.seed)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model)
    kind = model_kind(config.model.kind)
    window = kind.window(config.loss)
    starts = window_mask(train, window)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay
    )
    order = torch.Generator().manual_seed(config.train.seed)
    probe_x = val.obs[:VALIDATION_BATCH]
    mean_image = to_unit_interval(train.obs).mean(0)
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    for step, index in enumerate(batches(len(train), config.train.batch_size, steps + 1, order)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, steps)
        b = train.batch(index)
        loss, metrics = kind.compute(
            model,
            b.obs,
            b.action,
            b.next_obs,
            config.loss,
            continuation(train, index, window, starts),
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step % every == 0 or step == steps:
            model.eval()
            record = {"step": step, "seconds": time.perf_counter() - start}
            record |= measure(model, probe_x, mean_image) | decoder_gain(model, probe_x)
            record["grad_rms"] = gradient_rms(model)
            record["loss"] = {k: float(v) for k, v in metrics.items() if "loss/" in k}
            model.train()
            records.append(record)
            print_record(record)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip_norm)
        optimizer.step()
    model.eval()
    records[-1]["probe_r2"] = probe_r2(model, train, val, config.train.probe_steps)
    print("probe R^2 (validation):", json.dumps(records[-1]["probe_r2"]))
    return records


def print_record(record: dict[str, Any]) -> None:
    """One measurement as a few lines of text."""
    kl = ", ".join(f"{v:.2f}" for v in record["kl_per_dim"])
    print(
        f"step {record['step']} ({record['seconds']:.0f} s): KL {record['kl_total']:.2f} "
        f"nats [{kl}]; NLL {record['nll']:.1f} (mean image {record['nll_mean_image']:.1f}, "
        f"floor {record['nll_floor']:.1f}); recon - mean image RMS "
        f"{record['recon_vs_mean_image_rms']:.4f}; spread of the means across images "
        f"{record['mean_spread']:.4f}, posterior std {record['posterior_std']:.3f}; decoder "
        f"gain {record['decoder_gain']:.3g} logits per unit z, reconstruction's pull on the "
        f"means {record['recon_pull']:.3g}"
    )
    for name, layer in record["layers"].items():
        grad = record["grad_rms"].get(name, float("nan"))
        print(
            f"  {name:24s} out RMS {layer['out_rms']:9.4f}  dead {layer['dead_after_relu']:5.2f}"
            f"  grad RMS {grad:.2e}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a dataset collected for the experiment's env")
    parser.add_argument("--experiment", default="cartpole")
    parser.add_argument("--preset", default="debug")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        config = experiment_config(
            args.experiment, args.preset, overrides=args.overrides, dataset=args.data
        )
        records = study(config, args.data, args.steps, args.every)
    except UserError as exc:
        print(f"conv_collapse: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
