"""FeatureLifter: projection lands on the right pixel, pooling ignores view order, output range."""

import math

import torch
import torchvision
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

from holo3d.models.feature_lift import FeatureLifter, local_backbone_checkpoint
from holo3d.render.voxel_grid import voxel_centers

RED, BLUE = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])


def _orbit_cameras(n: int, dist: float = 3.0, focal: float = 2.0) -> PerspectiveCameras:
    azim = torch.linspace(0.0, 360.0, n + 1)[:n] + 17.0
    elev = 15.0 + 10.0 * torch.sin(torch.arange(n, dtype=torch.float32))
    R, T = look_at_view_transform(dist=dist, elev=elev, azim=azim)
    return PerspectiveCameras(focal_length=focal, R=R, T=T)


def _tiny_lifter(**kwargs) -> FeatureLifter:
    args = dict(
        feature_size=8, resolution=8, volume_extent=2.0, feature_image_size=48, proj_dim=4,
        backbone="resnet18",
    )
    args.update(kwargs)
    return FeatureLifter(**args).eval()


def _check_halves(height: int, width: int) -> None:
    """Left half red, right half blue: every voxel must read the colour of the pixel it projects to."""
    lifter = _tiny_lifter(feature_image_size=max(height, width))
    image = torch.zeros(1, 3, height, width)
    image[0, :, :, : width // 2] = RED[:, None, None]
    image[0, :, :, width // 2 :] = BLUE[:, None, None]
    camera = _orbit_cameras(1)
    points = voxel_centers(8, 2.0).reshape(-1, 3)
    maps = lifter.extract(image, torch.ones(1, 1, height, width))
    feats, valid = lifter.sample(maps[-1:], camera, points, (height, width))
    rgb = feats[0, :, :3]  # (M, 3)
    # Reference pixel positions from PyTorch3D's own screen transform (x right, y down, pixels).
    screen = camera.transform_points_screen(points[None], image_size=((height, width),))[0]
    col = screen[:, 0]
    inside = (col > 1) & (col < width - 1) & (screen[:, 1] > 1) & (screen[:, 1] < height - 1)
    away = (col - width / 2).abs() > 1.5
    check = inside & away
    assert check.sum() > 50
    expected = torch.where((col < width / 2)[:, None], RED, BLUE)
    torch.testing.assert_close(rgb[check], expected[check], atol=1e-4, rtol=0)
    assert valid[0, check].eq(1).all()


def test_voxel_reads_the_pixel_it_projects_to_square():
    _check_halves(32, 32)


def test_voxel_reads_the_pixel_it_projects_to_non_square():
    # Non-square ndc_isotropic images: the longer side spans a larger NDC range.
    _check_halves(32, 48)
    _check_halves(48, 32)


def test_points_outside_the_view_are_invalid():
    lifter = _tiny_lifter()
    camera = _orbit_cameras(1)
    maps = lifter.extract(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    centre = camera.get_camera_center()  # (1, 3)
    # far off to the side, the origin (in view), beyond the camera on the line from the origin (behind)
    points = torch.cat([torch.tensor([[50.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), centre * 1.5], dim=0)
    _, valid = lifter.sample(maps, camera, points, (32, 32))
    assert valid[0, 1] == 1  # the origin is in view
    assert valid[0, 0] == 0  # far off to the side
    assert valid[0, 2] == 0  # behind the camera


def test_pooling_is_invariant_to_source_view_order():
    torch.manual_seed(0)
    lifter = _tiny_lifter()
    n_scenes, n_views = 2, 4
    images = torch.rand(n_scenes, n_views, 3, 32, 32)
    masks = (torch.rand(n_scenes, n_views, 1, 32, 32) > 0.3).float()
    cameras = _orbit_cameras(n_scenes * n_views)
    perm = torch.tensor([2, 0, 3, 1])
    flat = (torch.arange(n_scenes)[:, None] * n_views + perm[None]).reshape(-1)
    with torch.no_grad():
        grid = lifter(images, masks, cameras)
        grid_perm = lifter(images[:, perm], masks[:, perm], cameras[flat.tolist()])
    assert grid.shape == (n_scenes, 8, 8, 8, 8)
    torch.testing.assert_close(grid, grid_perm, atol=1e-5, rtol=1e-5)


def test_output_in_unit_range_and_scenes_independent():
    torch.manual_seed(1)
    lifter = _tiny_lifter()
    with torch.no_grad():
        lifter.to_grid.weight.mul_(100.0)  # saturate tanh
    images = torch.rand(2, 3, 3, 32, 32)
    masks = torch.ones(2, 3, 1, 32, 32)
    cameras = _orbit_cameras(6)
    with torch.no_grad():
        grid = lifter(images, masks, cameras)
        # Changing scene 1 must not change scene 0 (no pooling across scenes).
        images2 = images.clone()
        images2[1] = torch.rand(3, 3, 32, 32)
        grid2 = lifter(images2, masks, cameras)
    assert grid.abs().max() <= 1.0
    torch.testing.assert_close(grid[0], grid2[0])
    assert not torch.allclose(grid[1], grid2[1])


def test_gradients_reach_projection_and_output_layers():
    lifter = _tiny_lifter().train()
    grid = lifter(torch.rand(1, 3, 3, 32, 32), torch.ones(1, 3, 1, 32, 32), _orbit_cameras(3))
    grid.square().mean().backward()
    assert lifter.to_grid.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in lifter.proj.parameters())
    assert math.isfinite(float(lifter.stem[0].weight.grad.abs().sum()))


def test_imagenet_weights_are_loaded_from_torch_home_only(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert local_backbone_checkpoint("resnet18") is None
    lifter = _tiny_lifter()  # no checkpoint: random weights, nothing downloaded
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.conv1.weight.fill_(0.25)
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    assert local_backbone_checkpoint("resnet18") is not None
    lifter = _tiny_lifter()
    assert torch.all(lifter.stem[0].weight == 0.25)
    assert not torch.all(_tiny_lifter(use_local_weights=False).stem[0].weight == 0.25)


def test_default_backbone_is_resnet34_with_four_projected_stages():
    lifter = FeatureLifter(feature_size=64, resolution=16)
    assert lifter.feature_image_size == 256 and lifter.stages == (1, 2, 3, 4)
    assert len(lifter.layers[2]) == 6  # ResNet-34's third stage has 6 blocks (ResNet-18: 2)
    assert lifter.sampled_channels == 4 * 16 + 3 + 1


def _saved_bytes_and_grads(lifter, images, masks, cameras):
    """Bytes autograd keeps for backward, the output, and every parameter's gradient."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        grid = lifter(images, masks, cameras)
    grid.square().mean().backward()
    return sum(saved), grid.detach(), {n: p.grad.clone() for n, p in lifter.named_parameters()}


def test_checkpointed_backbone_keeps_outputs_and_gradients_and_saves_less():
    torch.manual_seed(0)
    plain = _tiny_lifter(feature_image_size=64).train()
    recomputing = _tiny_lifter(feature_image_size=64, checkpoint_backbone=True).train()
    recomputing.load_state_dict(plain.state_dict())
    inputs = (torch.rand(2, 3, 3, 48, 48), torch.ones(2, 3, 1, 48, 48), _orbit_cameras(6))
    bytes_plain, grid_plain, grads_plain = _saved_bytes_and_grads(plain, *inputs)
    bytes_ckpt, grid_ckpt, grads_ckpt = _saved_bytes_and_grads(recomputing, *inputs)
    torch.testing.assert_close(grid_ckpt, grid_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    assert bytes_ckpt < 0.6 * bytes_plain  # the stages' activations are not kept
