"""Diffusion-DPO and Diffusion-KTO against transcriptions of the authors' code on the same tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.diffusion import draw_noise
from trainer.preference import balanced_draw, dpo_loss, kto_loss, prediction_errors

DIMS = [1, 2, 3, 4]  # (B, F, C, H, W) latents: the originals' images have [1, 2, 3]


def _original_dpo(model_pred, ref_pred, target, beta_dpo):
    # SalesforceAIResearch/DiffusionDPO @5233e75, train.py L1125-1145, transcribed (dims for video latents)
    model_losses = (model_pred - target).pow(2).mean(dim=DIMS)
    model_losses_w, model_losses_l = model_losses.chunk(2)
    model_diff = model_losses_w - model_losses_l
    with torch.no_grad():
        ref_losses = (ref_pred - target).pow(2).mean(dim=DIMS)
        ref_losses_w, ref_losses_l = ref_losses.chunk(2)
        ref_diff = ref_losses_w - ref_losses_l
    scale_term = -0.5 * beta_dpo
    inside_term = scale_term * (model_diff - ref_diff)
    return -1 * F.logsigmoid(inside_term).mean()


def _original_kto(model_pred, ref_pred, target, labels, beta_dpo, lambda_d_kto, lambda_u_kto):
    # jacklishufan/diffusion-kto @226bbd0, train_kto_sd_v1.5.py L1395-1399, L1427-1432, L1451-1492, L1509,
    # transcribed for --loss kto --halo sigmoid --bce_offset none on one process (accelerator.reduce = identity)
    model_losses = F.mse_loss(model_pred.float(), target.float(), reduction="none")
    model_losses = model_losses.mean(dim=list(range(1, len(model_losses.shape))))
    with torch.no_grad():
        ref_loss = F.mse_loss(ref_pred.float(), target.float(), reduction="none")
        ref_loss = ref_loss.mean(dim=list(range(1, len(ref_loss.shape))))
    policy_KL_logps = -model_losses
    reference_KL_logps = -ref_loss
    g_term = policy_KL_logps - reference_KL_logps
    scale_term = beta_dpo
    label_sgn = 2 * labels - 1
    labels_binary = labels == 1
    kl_gpu = g_term.mean().detach()
    kl = kl_gpu.clamp(min=0).detach()
    g_term = g_term - kl
    label_scale_g = label_sgn * scale_term * g_term
    h = torch.sigmoid(label_scale_g)
    w_y = lambda_d_kto * labels_binary + lambda_u_kto * ~labels_binary
    l_kto = w_y * (1 - h)
    return l_kto.mean()


def _original_class_weights(labels, positive_ratio):
    # jacklishufan/diffusion-kto @226bbd0, train_kto_sd_v1.5.py L724-741 (make_weights_for_balanced_classes)
    nclasses = 2
    count = [0] * nclasses
    for label in labels:
        count[int(label)] += 1
    weight_per_class = [0.0] * nclasses
    N = float(sum(count))
    for i in range(nclasses):
        weight_per_class[i] = N / (float(count[i]) + 1e-9)
    weight_per_class[1] *= positive_ratio
    weight_per_class[0] *= 1 - positive_ratio
    return [weight_per_class[int(v)] for v in labels]


def _tensors(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, 3, 4, 5, 6)
    target = torch.randn(shape, generator=g)
    model_pred = (target + 0.3 * torch.randn(shape, generator=g)).requires_grad_()
    ref_pred = target + 0.3 * torch.randn(shape, generator=g)
    return model_pred, ref_pred, target


def _errors(pred, target):
    return ((pred - target) ** 2).mean(dim=DIMS)


@pytest.mark.parametrize("beta", [5000.0, 50.0])
def test_dpo_loss_matches_the_original_formula(beta):
    model_pred, ref_pred, target = _tensors()
    ours = dpo_loss(_errors(model_pred, target), _errors(ref_pred, target), beta)
    (g_ours,) = torch.autograd.grad(ours, model_pred)
    theirs = _original_dpo(model_pred, ref_pred, target, beta)
    (g_theirs,) = torch.autograd.grad(theirs, model_pred)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6, abs=1e-9)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-5, atol=1e-9)


def test_paired_draws_share_timestep_and_noise_like_the_original():
    from diffusers import CogVideoXDDIMScheduler

    sched = CogVideoXDDIMScheduler(num_train_timesteps=1000)
    x0 = torch.zeros(6, 3, 4, 5, 6)
    d = draw_noise(sched, x0, torch.Generator().manual_seed(1), paired=True)
    t, noise = d.t, d.noise
    # the original: timesteps.chunk(2)[0].repeat(2), noise.chunk(2)[0].repeat(2, 1, 1, 1) (train.py L1053-1055)
    assert torch.equal(t, t.chunk(2)[0].repeat(2)) and torch.equal(noise, noise.chunk(2)[0].repeat(2, 1, 1, 1, 1))
    assert noise.shape == x0.shape and len(set(t[:3].tolist())) > 1
    noise = draw_noise(sched, x0, torch.Generator().manual_seed(1)).noise
    assert not torch.equal(noise[:3], noise[3:])
    with pytest.raises(ValueError):
        draw_noise(sched, x0[:5], torch.Generator(), paired=True)
    shared = draw_noise(sched, x0, torch.Generator().manual_seed(1), shared=True)  # KTO's noise: shared
    assert torch.equal(shared.t, shared.t[:1].repeat(6))
    assert torch.equal(shared.noise, shared.noise[:1].expand_as(shared.noise))


@pytest.fixture(scope="module")
def lora_pipe(tmp_path_factory):
    from trainer.generator import add_lora, build_tiny_cogvideox, load_pipeline

    pipe = load_pipeline(build_tiny_cogvideox(tmp_path_factory.mktemp("cog") / "tiny"), device="cpu")
    torch.manual_seed(0)
    add_lora(pipe, rank=4)
    with torch.no_grad():  # a policy that differs from the reference (LoRA B starts at zero)
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return pipe


def _lora_grads(pipe):
    return [p.grad for n, p in pipe.transformer.named_parameters() if "lora" in n and p.grad is not None]


def test_identical_pair_gives_log2_and_zero_gradient(lora_pipe):
    pipe = lora_pipe
    x = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    pipe.transformer.zero_grad()
    policy, reference = prediction_errors(pipe, torch.cat([x, x]), ["a red ball", "a red ball"],
                                          torch.Generator().manual_seed(3), paired=True)
    assert policy[0] != reference[0]  # the adapter changes the prediction, yet the pair carries no preference
    loss = dpo_loss(policy, reference, 5000.0)
    assert loss.item() == torch.tensor(math.log(2)).item()  # exactly log 2 in float32
    loss.backward()
    paired = max(float(g.abs().max()) for g in _lora_grads(pipe))

    # independent draws (the old bug) give the same pair a preference and a gradient
    pipe.transformer.zero_grad()
    policy, reference = prediction_errors(pipe, torch.cat([x, x]), ["a red ball", "a red ball"],
                                          torch.Generator().manual_seed(3))
    loss = dpo_loss(policy, reference, 5000.0)
    loss.backward()
    assert loss.item() != pytest.approx(math.log(2), abs=1e-3)
    unpaired = max(float(g.abs().max()) for g in _lora_grads(pipe))
    # zero up to float32 summation order: the winner's and loser's gradients cancel term by term
    assert paired < 1e-6 * unpaired, (paired, unpaired)
    pipe.transformer.zero_grad()


@pytest.mark.parametrize("labels", [[1, 0, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.5)])
def test_kto_loss_matches_the_original_formula(labels, weights):
    model_pred, ref_pred, target = _tensors(seed=len(labels) + int(weights[1] * 10))
    labels = torch.tensor(labels)
    ours = kto_loss(_errors(model_pred, target), _errors(ref_pred, target), labels == 1, 1000.0, *weights)
    (g_ours,) = torch.autograd.grad(ours, model_pred)
    theirs = _original_kto(model_pred, ref_pred, target, labels, 1000.0, *weights)
    (g_theirs,) = torch.autograd.grad(theirs, model_pred)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6, abs=1e-9)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-5, atol=1e-9)
    # data-parallel: the reference point is the mean over every process's rows, given from outside
    policy, reference = _errors(model_pred, target), _errors(ref_pred, target)
    mean = (reference - policy).detach().mean()
    assert kto_loss(policy, reference, labels == 1, 1000.0, *weights, batch_mean=mean).item() == pytest.approx(
        ours.item(), rel=1e-6)
    assert kto_loss(policy, reference, labels == 1, 1000.0, *weights, batch_mean=mean + 1e-3).item() != \
        pytest.approx(ours.item(), rel=1e-6)


@pytest.mark.parametrize("labels", [[1, 0, 0, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0]])
def test_class_balanced_draw_is_the_originals_weighted_sampler(labels):
    desirable = torch.tensor(labels) == 1
    ours = balanced_draw(desirable, 0.8, torch.Generator().manual_seed(5)).tolist()
    sampler = torch.utils.data.WeightedRandomSampler(_original_class_weights(labels, 0.8), len(labels),
                                                     generator=torch.Generator().manual_seed(5))
    assert ours == list(sampler)


def test_class_balanced_draw_reaches_the_positive_ratio():
    desirable = torch.tensor([True, False, False, False, False, False, False, False, False, False])
    gen = torch.Generator().manual_seed(0)
    share = torch.cat([desirable[balanced_draw(desirable, 0.8, gen)] for _ in range(400)]).float().mean()
    assert share.item() == pytest.approx(0.8, abs=0.02)
    with pytest.raises(ValueError):
        balanced_draw(desirable, 1.5, gen)


def test_kto_defaults_are_diffusion_ktos():
    from trainer.kto_config import KTOConfig

    c = KTOConfig(pipeline="p", prompts="q", output_dir="o")
    # beta_dpo 1000 (L387-391), the class-balanced sampler at exps/example.sh's 0.8, one t and noise per image
    assert (c.beta, c.balance, c.positive_ratio, c.noise, c.desirable_weight, c.undesirable_weight) == \
        (1000.0, "class", 0.8, "per_sample", 1.0, 1.0)


def test_kto_shared_noise_gives_a_video_labelled_both_ways_no_gradient(lora_pipe):
    """With one t and noise for the batch, a video that is both desirable and undesirable carries no
    preference: the two rows' gradients cancel (as Diffusion-DPO's identical pair); per-row draws do not."""
    pipe = lora_pipe
    x = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([True, False])
    grads = {}
    for shared in (True, False):
        pipe.transformer.zero_grad()
        policy, reference = prediction_errors(pipe, torch.cat([x, x]), ["a red ball"] * 2,
                                              torch.Generator().manual_seed(3), shared=shared)
        kto_loss(policy, reference, labels, 0.5).backward()
        grads[shared] = max(float(g.abs().max()) for g in _lora_grads(pipe))
    pipe.transformer.zero_grad()
    assert grads[True] < 1e-6 * grads[False], grads
