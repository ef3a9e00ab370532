"""SSM: per-sample EMA thresholds, the all-experts clean rule, D_T fixed, state round trip."""

import pytest
import torch

from sspa_ray.engine.selection import SampleSelector


def logits_for(probs):
    """Per-expert logits [k, B, C] whose softmax is `probs`."""
    return torch.tensor(probs).log()


def test_thresholds_start_at_one_over_c_and_everything_is_clean():
    sel = SampleSelector(5, 3, 7, 0.95)
    assert torch.equal(sel.thresholds, torch.full((5, 3), 1 / 7))
    assert sel.clean.all()


def test_one_epoch_steps_the_ema_and_applies_the_all_experts_rule():
    sel = SampleSelector(4, 2, 3, momentum=0.9)
    # Sample 0: both experts confident in its label. Sample 1: expert 2 prefers another class.
    # Sample 2: confident in another class. Sample 3 is not seen this epoch.
    probs = [
        [[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]],
        [[0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]],
    ]
    sel.observe(torch.tensor([0, 1, 2]), logits_for(probs), torch.tensor([0, 1, 0]))
    sel.end_epoch()
    expected = torch.tensor([[0.8, 0.7], [0.5, 0.6], [0.8, 0.8]]) * 0.1 + 0.9 / 3
    assert torch.allclose(sel.thresholds[:3], expected)
    assert torch.equal(sel.thresholds[3], torch.full((2,), 1 / 3))
    # p_i(y) > tau_i for every expert: 0.8 > 0.38, 0.7 > 0.37 -> clean; 0.2 < 0.36 -> noisy.
    assert sel.clean.tolist() == [True, False, False, True]


def test_unseen_samples_keep_their_flag_and_a_sample_can_come_back():
    sel = SampleSelector(2, 1, 2, momentum=0.5)
    sel.observe(torch.tensor([0, 1]), logits_for([[[0.9, 0.1], [0.9, 0.1]]]), torch.tensor([1, 0]))
    sel.end_epoch()
    assert sel.clean.tolist() == [False, True]
    sel.observe(torch.tensor([0]), logits_for([[[0.1, 0.9]]]), torch.tensor([1]))
    sel.end_epoch()
    assert sel.clean.tolist() == [True, True]
    assert sel.thresholds[1].item() == pytest.approx(0.5 * 0.5 + 0.5 * 0.9)  # stepped once only


def test_always_clean_samples_stay_clean():
    target = torch.tensor([True, True, False])
    sel = SampleSelector(3, 1, 2, momentum=0.5, always_clean=target)
    wrong = logits_for([[[0.99, 0.01]] * 3])
    sel.observe(torch.arange(3), wrong, torch.tensor([1, 1, 1]))
    sel.end_epoch()
    assert sel.clean.tolist() == [True, True, False]


def test_state_round_trip_and_shape_check():
    sel = SampleSelector(3, 2, 7, 0.95)
    sel.observe(torch.arange(3), torch.randn(2, 3, 7), torch.tensor([0, 1, 2]))
    sel.end_epoch()
    other = SampleSelector(3, 2, 7, 0.95)
    other.load_state_dict(sel.state_dict())
    assert torch.equal(other.thresholds, sel.thresholds) and torch.equal(other.clean, sel.clean)
    with pytest.raises(ValueError, match="thresholds"):
        SampleSelector(4, 2, 7, 0.95).load_state_dict(sel.state_dict())
