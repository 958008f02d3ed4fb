"""CudaGraphed / graphed_unet: a no-op off CUDA; on CUDA the replay equals the eager U-Net for any
number of tensor inputs, with one graph per input shape."""

import pytest
import torch
from torch import nn

from holo3d.models.cuda_graph_unet import CudaGraphed, graphed_unet
from holo3d.models.unet2d import UNet2D


def tiny_unet() -> UNet2D:
    torch.manual_seed(0)
    net = UNet2D(in_channels=3, out_channels=3, cond_dim=4, model_channels=16, channel_mult=(1, 2),
                 num_res_blocks=1, attention_resolutions=(8,), image_size=16)
    with torch.no_grad():  # the zero-initialised output conv would make every output 0
        net.out[-1].weight.normal_(0, 0.05)
    return net.eval()


def test_graphed_unet_leaves_a_cpu_model_alone():
    holder = nn.Module()
    holder.unet = tiny_unet()
    original = holder.unet
    with graphed_unet(holder, enabled=True):
        assert holder.unet is original
    assert holder.unet is original


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_replay_matches_eager_with_three_inputs_and_one_graph_per_shape():
    net = tiny_unet().cuda()
    graphed = CudaGraphed(net)
    for batch in (2, 5, 2):
        x, level, token = torch.randn(batch, 3, 16, 16).cuda(), torch.rand(batch).cuda(), torch.randn(batch, 4).cuda()
        with torch.no_grad():
            torch.testing.assert_close(graphed(x, level, token), net(x, level, token), atol=1e-4, rtol=1e-4)
    assert len(graphed._graphs) == 2
