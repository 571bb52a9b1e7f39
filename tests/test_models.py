"""Every registry model maps (N, 1, 28, 28) images to (N, 10) logits."""

import pytest
import torch

from mnistlab.errors import ConfigError
from mnistlab.models import build_model, count_parameters, flops_per_image, model_names


@pytest.mark.parametrize("name", model_names())
def test_output_shape_and_logits(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    # Logits, not log-probabilities: exp does not sum to one.
    assert not torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-3)
    assert count_parameters(model) > 0


def test_mlp_hidden_widths_are_configurable():
    model = build_model("mlp", hidden=(32, 16), dropout=0.0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 16), (16, 10)]


def test_width_scales_conv_channels():
    narrow, wide = build_model("cnn", width=0.5), build_model("cnn", width=2.0)
    assert count_parameters(narrow) < count_parameters(build_model("cnn")) < count_parameters(wide)


def test_lenet_wide_has_more_filters_than_lenet5():
    def first_conv(m):
        return next(x for x in m.modules() if isinstance(x, torch.nn.Conv2d)).out_channels

    assert first_conv(build_model("lenet-wide")) > first_conv(build_model("lenet5")) == 6


def test_flops_count_matches_hand_count_for_mlp():
    model = build_model("mlp", hidden=(100,), dropout=0.0)
    assert flops_per_image(model) == 2 * (784 * 100 + 100 * 10)


def test_flops_count_matches_hand_count_for_lenet5():
    # conv1: 28*28*6 outputs x 25 MACs; conv2: 10*10*16 x (6*25); fc: 400*120 + 120*84 + 84*10
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert flops_per_image(build_model("lenet5")) == 2 * macs


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'.*cnn"):
        build_model("resnet")
