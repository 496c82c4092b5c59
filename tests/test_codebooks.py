"""Dead-code restarts (train/codebooks.py): which codes move, where to, when, and what is counted."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alit.model.quantizer import VectorQuantizer
from alit.train.codebooks import DeadCodeRestarter, latent_quantizer_restarter


def test_unused_codes_move_onto_the_worst_served_inputs():
    weight = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]))
    r = DeadCodeRestarter(weight, every=2, normalize=False)
    z = torch.tensor([[0.1, 0.0], [0.0, 0.2], [5.0, 0.0], [0.0, 3.0]])
    ids = torch.zeros(4, dtype=torch.long)  # everything went to code 0
    r.observe(z, ids)
    assert r.step_end(1) == 0  # not a restart step: the step's vectors are dropped, usage kept
    assert r.usage.tolist() == [4, 0, 0, 0]
    r.observe(z, ids)
    assert r.step_end(2) == 3
    # codes 1, 2, 3 take the 3 inputs farthest from the old codebook, in the inputs' order
    assert weight[0].tolist() == [0.0, 0.0]
    assert torch.equal(weight[1:], z[[1, 2, 3]])
    assert r.usage.sum() == 0  # a new window
    r.observe(z, torch.tensor([0, 1, 2, 3]))
    assert r.step_end(4) == 0  # all used


def test_fewer_candidates_than_dead_codes_and_duplicates():
    weight = torch.nn.Parameter(torch.zeros(5, 3))
    r = DeadCodeRestarter(weight, every=1, normalize=True)
    z = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # two equal after normalising
    r.observe(z, torch.tensor([0, 0, 0]))
    assert r.step_end(1) == 2
    rows = {tuple(v) for v in weight[1:3].tolist()}
    assert rows == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}
    assert weight[3:].abs().sum() == 0


def test_latent_hook_counts_training_calls_only_and_state_round_trips():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 4)
    r = latent_quantizer_restarter(q, every=3)
    z = torch.randn(2, 5, 4)
    q.train()
    out = q(z)
    assert r.step_usage.sum() == 10 and r.usage.sum() == 0  # counted at the step's end
    assert torch.equal(r.step_usage, torch.bincount(out.ids.flatten(), minlength=16))
    with torch.no_grad():
        q(z)
    q.eval()
    q(z)
    assert r.step_usage.sum() == 10
    assert r.step_end(1) == 0 and r.usage.sum() == 10 and r.step_usage.sum() == 0
    state = r.state_dict()
    other = DeadCodeRestarter(q.codebook.weight, every=3, normalize=True)
    other.load_state_dict(state)
    assert torch.equal(other.usage, r.usage)
    # after a restart every code is the nearest code of some input or was in use
    q.train()
    q(z)
    before = q.codebook.weight.detach().clone()
    n = r.step_end(3)
    used = set(out.ids.flatten().tolist())
    assert n == min(16 - len(used), 10)
    moved = (q.codebook.weight != before).any(1)
    assert not moved[list(used)].any() and moved.sum() == n
    zn = F.normalize(z.reshape(-1, 4), dim=-1)
    assert all(torch.isclose(zn, q.codebook.weight[i]).all(1).any() for i in moved.nonzero().flatten())


def test_candidates_keep_the_global_batch_order_across_micro_steps_and_calls():
    """Two micro-steps of 2 images, two quantiser calls each: the candidates are ordered by image
    (its place in the step), then call, then position, as one process reading all 4 images in one
    micro-step would order them; rounding-size changes of the inputs move no code to another input."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 3, 2), torch.randn(4, 2, 2)  # the step's 4 images, calls of 3 and 2 tokens
    ids1, ids2 = torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long)

    def restart(chunks, noise=0.0):
        weight = torch.nn.Parameter(torch.zeros(30, 2))
        r = DeadCodeRestarter(weight, every=1, normalize=False)
        for sl in chunks:
            r.begin_micro_step()
            r.observe(z1[sl] + noise, ids1[sl])
            r.observe(z2[sl] + noise, ids2[sl])
        assert r.step_end(1) == 20
        return weight.detach()[1:21]

    one = restart([slice(0, 4)])
    expected = torch.cat([z1, z2], 1).reshape(-1, 2)  # image-major, then call, then position
    assert torch.equal(one, expected)
    assert torch.equal(restart([slice(0, 2), slice(2, 4)]), one)
    assert torch.allclose(restart([slice(0, 4)], noise=1e-6), one, atol=1e-5)


def test_max_pool_keeps_the_first_images_of_the_step():
    weight = torch.nn.Parameter(torch.zeros(10, 2))
    r = DeadCodeRestarter(weight, every=1, normalize=False, max_pool=4)
    z = torch.arange(1.0, 17.0).reshape(4, 2, 2)  # 4 images x 2 vectors
    for sl in (slice(0, 2), slice(2, 4)):
        r.begin_micro_step()
        r.observe(z[sl], torch.zeros(2, 2, dtype=torch.long))
    assert r.step_end(1) == 4
    assert torch.equal(weight.detach()[1:5], z[:2].reshape(-1, 2))
