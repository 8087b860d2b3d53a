"""The CorrWise 3D-conv ResNet predictor: shapes, rollout, interpolation mode, errors (random init)."""

import pytest
import torch

from vidpred.errors import VidpredError
from vidpred.models.predictor import Predictor


def test_next_frame_shape_and_range():
    m = Predictor(ngf=4).eval()
    out = m(torch.rand(2, 3, 3, 32, 48) * 2 - 1)
    assert out.shape == (2, 3, 32, 48)
    assert out.abs().max() <= 1.0


def test_rollout_feeds_predictions_back():
    torch.manual_seed(0)
    m = Predictor(ngf=4).eval()
    ctx = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        roll = m.rollout(ctx, 3)
        first = m(ctx)
        second = m(torch.cat([ctx[:, 1:], first[:, None]], 1))
    assert roll.shape == (1, 3, 3, 16, 16)
    torch.testing.assert_close(roll[:, 0], first)
    torch.testing.assert_close(roll[:, 1], second)


def test_interpolation_mode_two_frames_and_gradients():
    m = Predictor(ngf=4, context_frames=2)
    ctx = torch.rand(2, 2, 3, 16, 16, requires_grad=True)
    m(ctx).mean().backward()
    assert ctx.grad.abs().sum() > 0


def test_bad_input_shapes():
    m = Predictor(ngf=4)
    with pytest.raises(VidpredError, match="B×3×3×H×W"):
        m(torch.zeros(1, 2, 3, 16, 16))
    with pytest.raises(VidpredError, match="divisible by 8"):
        m(torch.zeros(1, 3, 3, 20, 16))
