"""``model.init``: He initialisation keeps a signal's scale through deep ReLU stacks, which
PyTorch's default shrinks; the conv encoder / deconv decoder then tell images and latents apart
at the start of training (the cause of their collapse to the prior on the cart-pole)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentrl.models import E2C, ModelConfig, ModelConfigError
from latentrl.models.encoder import build_mlp
from latentrl.models.initialisation import fan_in, he_init, initialise, weighted_layers
from latentrl.models.pcc import PCC


def sparse_scenes(batch: int, seed: int = 0) -> torch.Tensor:
    """Cart-pole-like frames ``(batch, 2, 64, 64)`` uint8: black, a bright 3x12 bar at a random
    place, about 1% of the pixels lit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, 2, 64, 64, dtype=torch.uint8)
    rows = torch.randint(0, 61, (batch, 2), generator=g)
    cols = torch.randint(0, 52, (batch, 2), generator=g)
    for i in range(batch):
        for k in range(2):
            r, c = int(rows[i, k]), int(cols[i, k])
            x[i, k, r : r + 3, c : c + 12] = 255
    return x


def test_fan_in_counts_the_inputs_of_one_output() -> None:
    assert fan_in(nn.Linear(30, 7)) == 30
    assert fan_in(nn.Conv2d(2, 32, kernel_size=4, stride=2, padding=1)) == 2 * 16
    # a stride-2 4x4 transposed conv: each output pixel gathers 2x2 taps of every input channel
    assert fan_in(nn.ConvTranspose2d(256, 128, kernel_size=4, stride=2, padding=1)) == 256 * 4
    with pytest.raises(TypeError):
        fan_in(nn.ReLU())


def test_he_init_draws_the_stated_variances_and_zero_biases() -> None:
    torch.manual_seed(0)
    net = build_mlp([400, 300, 200])
    he_init(weighted_layers(net))
    first, last = net[0], net[2]
    assert first.weight.var().item() == pytest.approx(2 / 400, rel=0.02)
    assert last.weight.var().item() == pytest.approx(1 / 300, rel=0.03)
    assert first.bias.abs().max() == 0 and last.bias.abs().max() == 0


@pytest.mark.parametrize("kind", ["he", "torch"])
def test_six_relu_layers_keep_the_differences_between_inputs_only_with_he(kind: str) -> None:
    torch.manual_seed(1)
    net = build_mlp([256] * 8)  # 7 layers
    initialise(net, kind)
    x = torch.randn(512, 256)
    with torch.no_grad():
        hidden = net[:-1](x)  # after the 6th ReLU
    # variance across inputs, per unit: what tells one input from another downstream
    ratio = hidden.var(0).mean().item() / x.var(0).mean().item()
    if kind == "he":
        assert 0.05 < ratio < 1.0  # a ReLU turns part of the variance into a mean
    else:
        assert ratio < 6.0**-4  # each layer scales it by about 1/6


def test_conv_pair_tells_images_and_latents_apart_only_with_he() -> None:
    """At the start of training the torch-initialised conv encoder gives nearly the same
    posterior mean for every image, and the deconv decoder nearly the same image for every z:
    the gradient has nothing to separate them by, and the KL pulls q onto the prior."""
    x = sparse_scenes(128)
    z = torch.randn(128, 8, generator=torch.Generator().manual_seed(2))
    spreads = {}
    for init in ("torch", "he"):
        torch.manual_seed(0)
        model = E2C(
            ModelConfig(
                obs_shape=(2, 64, 64),
                action_dim=1,
                latent_dim=8,
                encoder="conv",
                decoder="deconv",
                hidden_sizes=(128, 128),
                init=init,
            )
        )
        with torch.no_grad():
            spreads[init] = (
                model.encode(x).mean.std(0).mean().item(),
                model.decode(z).std(0).mean().item(),
            )
    (enc_torch, dec_torch), (enc_he, dec_he) = spreads["torch"], spreads["he"]
    assert enc_he > 30 * enc_torch and dec_he > 30 * dec_torch
    assert enc_torch < 1e-3 and enc_he > 0.01


def test_default_init_is_torch_and_builds_the_same_weights() -> None:
    assert ModelConfig(obs_shape=(2, 8, 8), action_dim=1).init == "torch"
    torch.manual_seed(3)
    before = E2C(ModelConfig(obs_shape=(2, 8, 8), action_dim=1, hidden_sizes=(16,)))
    torch.manual_seed(3)
    again = E2C(ModelConfig(obs_shape=(2, 8, 8), action_dim=1, hidden_sizes=(16,), init="torch"))
    for (name, a), (_, b) in zip(
        before.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_he_reaches_every_layer_of_encoder_decoder_and_pcc_backward_encoder() -> None:
    torch.manual_seed(4)
    config = ModelConfig(
        obs_shape=(2, 16, 16),
        action_dim=1,
        encoder="conv",
        decoder="deconv",
        hidden_sizes=(32,),
        conv_channels=(4, 8),
        init="he",
        kind="pcc",
    )
    model = PCC(config)
    for part in (model.encoder, model.decoder, model.backward_encoder):
        for layer in weighted_layers(part):
            assert layer.bias.abs().max() == 0, layer
    transition_biases = [m.bias for m in weighted_layers(model.transition_net)]
    assert any(b.abs().max() > 0 for b in transition_biases)  # the transition keeps torch's


def test_an_unknown_init_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="init"):
        ModelConfig(obs_shape=(2, 8, 8), action_dim=1, init="xavier")
    with pytest.raises(ValueError, match="init must be one of"):
        initialise(nn.Linear(2, 2), "xavier")  # type: ignore[arg-type]
