import pytest
import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from siamcl.encoders import ENCODERS, build_encoder
from siamcl.losses import LOSSES, MetricLoss, build_loss


@pytest.mark.parametrize("name", ["conv4", "conv4-half", "conv4-small", "koch"])
@pytest.mark.parametrize("size", [16, 28, 64])
def test_image_encoders_give_unit_norm_embeddings(name, size):
    encoder = build_encoder(name, (1, size, size), embedding_dim=32).eval()
    out = encoder(torch.randn(3, 1, size, size))
    assert out.shape == (3, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_mlp_encoder_on_vectors():
    encoder = build_encoder("mlp", (20,), embedding_dim=8).eval()
    out = encoder(torch.randn(5, 20))
    assert out.shape == (5, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


def test_conv4_small_has_about_a_sixteenth_of_the_parameters():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    big = count(build_encoder("conv4", (1, 28, 28)))
    small = count(build_encoder("conv4-small", (1, 28, 28)))
    assert small < big / 8


def test_conv4_half_has_half_the_channels_and_about_a_quarter_of_the_weights():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    full, half = build_encoder("conv4", (1, 16, 16)), build_encoder("conv4-half", (1, 16, 16))
    widths = [m.out_channels for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [32, 32, 32, 32]
    assert full.body[-1].in_features == 64 and half.body[-1].in_features == 32
    assert count(full) / 5 < count(half) < count(full) / 3


def test_user_module_is_wrapped_and_normalised():
    encoder = build_encoder(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (3, 4))
    out = encoder(torch.randn(2, 3, 4))
    assert out.shape == (2, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_user_module_with_wrong_output_is_rejected():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        build_encoder(nn.Identity(), (1, 8, 8))
    with pytest.raises(ValueError, match="failed on inputs"):
        build_encoder(nn.Linear(3, 2), (1, 8, 8))


def test_unknown_encoder_and_image_encoder_on_vectors():
    with pytest.raises(ValueError, match="unknown encoder 'resnet9000'"):
        build_encoder("resnet9000", (1, 28, 28))
    with pytest.raises(ValueError, match="needs image inputs"):
        build_encoder("conv4", (20,))
    with pytest.raises(TypeError):
        build_encoder(3, (20,))
    assert set(ENCODERS) >= {"conv4", "conv4-flat", "conv4-flat-pool-first", "koch", "mlp"}


@pytest.mark.parametrize("name", ["conv4-flat", "conv4-flat-pool-first"])
def test_conv4_flat_keeps_where_features_lie(name):
    # A blob moved by 16 pixels (the four blocks' stride), far from the borders, moves every
    # feature map by one cell: conv4's average cannot tell the two places apart, conv4-flat's
    # projection can.
    torch.manual_seed(0)
    image = torch.zeros(1, 1, 96, 96)
    image[..., 32:38, 32:38] = 1.0
    moved = torch.roll(image, shifts=(16, 16), dims=(2, 3))
    with torch.no_grad():
        averaged = build_encoder("conv4", (1, 96, 96), embedding_dim=16).eval()
        torch.testing.assert_close(averaged(image), averaged(moved))
        flat = build_encoder(name, (1, 96, 96), embedding_dim=16).eval()
        assert not torch.allclose(flat(image), flat(moved), atol=1e-3)


@pytest.mark.parametrize("name", ["conv4-flat", "conv4-flat-pool-first"])
@pytest.mark.parametrize("size", [(28, 28), (12, 12), (20, 33)])
def test_conv4_flat_fits_any_image_size(name, size):
    network = build_encoder(name, (1, *size), embedding_dim=16).eval()
    with torch.no_grad():
        assert network(torch.rand(3, 1, *size)).shape == (3, 16)


@pytest.mark.parametrize(
    ("name", "norm_sizes"),
    [("conv4-flat", [28, 14, 7, 4]), ("conv4-flat-pool-first", [14, 7, 4, 2])],
)
def test_pool_first_normalises_the_pooled_maps(name, norm_sizes):
    # With pool_first, batch norm and ReLU run on what the pooling leaves: a quarter of the map.
    network = build_encoder(name, (1, 28, 28), embedding_dim=16)
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sizes = []
    for norm in norms:
        norm.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape[-1]))
    network(torch.rand(4, 1, 28, 28))
    assert sizes == norm_sizes


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_fall_as_an_encoder_learns_two_clusters(name):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(32, 10) + 2, torch.randn(32, 10) - 2])
    y = torch.cat([torch.zeros(32), torch.ones(32)]).long()
    encoder = build_encoder("mlp", (10,), embedding_dim=8)
    loss = build_loss(name)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    first = loss(encoder(x), y).item()
    for _ in range(30):
        optimizer.zero_grad()
        value = loss(encoder(x), y)
        value.backward()
        optimizer.step()
    assert loss(encoder(x), y).item() < first


def test_pml_objects_are_accepted_and_composed():
    pml = losses.TripletMarginLoss(margin=0.1)
    assert build_loss(pml).loss is pml and build_loss(pml).miner is None
    miner = miners.BatchHardMiner()
    assert build_loss("triplet", miner=miner).miner is miner
    assert isinstance(build_loss("supcon"), MetricLoss)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'arcfacey'"):
        build_loss("arcfacey")
    with pytest.raises(TypeError):
        build_loss(1.5)


def test_affine_views_start_with_the_image_and_repeat_their_warps():
    from siamcl.augment import AffineViews

    images = torch.rand(5, 1, 12, 12)
    views = AffineViews(4, seed=3)
    first, *warped = [view(images) for view in views]
    assert len(views) == 4 and torch.equal(first, images)
    assert all((w - images).abs().max() > 1e-3 for w in warped)
    again = [view(images[2:3]) for view in AffineViews(4, seed=3)]
    for one, whole in zip(again, [first, *warped]):
        torch.testing.assert_close(one, whole[2:3])
    with pytest.raises(ValueError, match="views must be a positive integer, got 0"):
        AffineViews(0)


def test_scaled_distortion_widens_every_range_around_the_identity():
    from siamcl.augment import RandomAffine

    wide = RandomAffine(degrees=10, scale=(0.9, 1.2), shear=8, translate=0.05).scaled(2)
    assert (wide.degrees, wide.shear) == (20, 16)
    assert wide.scale == pytest.approx((0.8, 1.4)) and wide.translate == pytest.approx(0.1)
    still = RandomAffine().scaled(0)(torch.rand(3, 1, 10, 10), torch.Generator().manual_seed(0))
    assert still.shape == (3, 1, 10, 10)
    with pytest.raises(ValueError, match="distortion scale must be non-negative, got -1"):
        RandomAffine().scaled(-1)


def test_elastic_distortion_adds_a_smooth_wobble_to_the_affine_warp():
    from siamcl.augment import RandomAffine, warp

    images = torch.zeros(4, 1, 20, 20)
    images[:, :, 5:15, 9:11] = 1.0  # a vertical stroke
    plain = RandomAffine()
    # elastic=0 is the affine warp alone, drawn from the generator as before
    theta = plain.matrices(4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(plain(images, torch.Generator().manual_seed(1)), warp(images, theta))
    wobbly = RandomAffine(elastic=0.05)
    bent = wobbly(images, torch.Generator().manual_seed(1))
    assert (bent - warp(images, theta)).abs().max() > 0.1  # the stroke moved
    torch.testing.assert_close(bent, wobbly(images, torch.Generator().manual_seed(1)))
    assert bent.sum() == pytest.approx(warp(images, theta).sum(), rel=0.25)  # bent, not erased
    assert wobbly.scaled(1.5).elastic == pytest.approx(0.075)
