"""model.batch_norm: BatchNorm1d in the encoder's and decoder's fully connected layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentrl.kinds import build_model
from latentrl.models import ModelConfig
from latentrl.models.encoder import build_mlp

TINY = {"obs_shape": (2, 8, 8), "action_dim": 2, "hidden_sizes": (16, 16),
        "transition_hidden_sizes": (8,), "conv_channels": (4, 8)}  # fmt: skip


def layer_types(net: nn.Module) -> list[type]:
    return [type(m) for m in net]


def test_build_mlp_puts_batch_norm_before_every_relu_and_none_after_the_last_layer() -> None:
    with_norm = build_mlp([5, 7, 3, 2], batch_norm=True)
    assert layer_types(with_norm) == [
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear,
    ]  # fmt: skip
    assert [m.num_features for m in with_norm if isinstance(m, nn.BatchNorm1d)] == [7, 3]
    assert layer_types(build_mlp([5, 7, 3, 2])) == [nn.Linear, nn.ReLU] * 2 + [nn.Linear]


@pytest.mark.parametrize("kind", ["e2c", "pcc", "filter", "pc3"])
@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_every_kind_builds_batch_norm_only_where_asked(kind: str, encoder: str) -> None:
    config = {**TINY, "kind": kind, "encoder": encoder}
    plain = build_model(ModelConfig(**config))  # type: ignore[arg-type]
    normed = build_model(ModelConfig(**config, batch_norm=True))  # type: ignore[arg-type]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    norms = [m for m in normed.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == (2 if normed.decoder is None else 4)  # 2 hidden layers each
    assert not any(isinstance(m, nn.BatchNorm1d) for m in normed.transition_net.modules())


def test_in_eval_mode_an_encoding_does_not_depend_on_the_rest_of_the_batch() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY, batch_norm=True))  # type: ignore[arg-type]
    images = torch.randint(0, 256, (6, 2, 8, 8), dtype=torch.uint8)
    model.train()
    for _ in range(3):  # move the running statistics away from their start
        model.encoder(images)
    model.train()
    batch_in_training = model.encoder(images).mean
    alone_in_training = model.encoder(images[:2]).mean
    assert not torch.allclose(batch_in_training[:2], alone_in_training)  # the test can tell
    model.eval()
    with torch.no_grad():
        batch = model.encoder(images).mean
        one = model.encoder(images[3:4]).mean
        decoded = model.decode(batch)
        decoded_one = model.decode(batch[3:4])
    torch.testing.assert_close(one, batch[3:4])
    torch.testing.assert_close(decoded_one, decoded[3:4])
    stats = model.state_dict()
    assert any(key.endswith("running_mean") for key in stats)  # saved with the weights
