"""CIFAR-sized versions of torchvision's model families, for 32×32 (and 28×28) inputs.

torchvision builds these nets for 224 px ImageNet images: a 7×7 stride-2 stem and an early
max pool would shrink a 32×32 image to 8×8 before the first block. As is standard on CIFAR
(kuangliu/pytorch-cifar), we keep torchvision's families and swap only the stem for a 3×3
stride-1 convolution, so the nets take the small image directly, without a resize.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.alexnet import AlexNet
from torchvision.models.densenet import DenseNet
from torchvision.models.googlenet import BasicConv2d, GoogLeNet
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.vgg import VGG, cfgs, make_layers

from training.architectures._common import flat_features
from training.registry import register


@register("resnet18", paper="He et al. 2016, Deep residual learning for image recognition",
          summary="torchvision ResNet-18 with a 3x3 stride-1 stem and no stem max pool")
def resnet18(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register("vgg16", paper="Simonyan & Zisserman 2014, Very deep convolutional networks for large-scale image recognition",
          summary="torchvision VGG-16 (with BatchNorm) features, one FC classifier as on CIFAR")
def vgg16(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    model = VGG(make_layers(cfgs["D"], batch_norm=True), num_classes=num_classes)
    model.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True  # 28 px digits survive five halvings (28-14-7-4-2-1)
    # After five poolings a 32 px image is 1×1×512: a 4096-wide ImageNet head would be all waste.
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)
    return model


@register("alexnet", paper="Krizhevsky et al. 2012, ImageNet classification with deep convolutional neural networks",
          summary="torchvision AlexNet with a 3x3 stride-1 CIFAR feature stack and a 1024-wide head")
def alexnet(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    model = AlexNet(num_classes=num_classes)
    # AlexNet's five convolutions and three max pools, sized for 32 px: 32-16-8-4.
    model.features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )
    model.avgpool = nn.Identity()
    features = flat_features(model.features, in_channels, image_size)
    model.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(features, 1024), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
        nn.Linear(1024, num_classes),
    )
    # Without BatchNorm, PyTorch's default init leaves eight layers' signal too weak to learn
    # from: on CIFAR-10 the loss sat at chance (2.302) for the whole first epoch. He init for
    # the convolutions, as torchvision gives VGG, starts it learning within the warm-up.
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.zeros_(layer.bias)
    return model


def _densenet(block_config: tuple[int, int, int, int], in_channels: int, num_classes: int) -> nn.Module:
    model = DenseNet(growth_rate=32, block_config=block_config,
                                 num_init_features=64, num_classes=num_classes)
    model.features.conv0 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
    model.features.pool0 = nn.Identity()
    return model


_DENSENET_PAPER = "Huang et al. 2017, Densely connected convolutional networks"
for _depth, _blocks in {121: (6, 12, 24, 16), 169: (6, 12, 32, 32),
                        201: (6, 12, 48, 32), 264: (6, 12, 64, 48)}.items():
    register(f"densenet{_depth}", paper=_DENSENET_PAPER,
             summary=f"torchvision DenseNet-{_depth} (k=32, blocks {_blocks}) with a 3x3 stride-1 stem")(
        lambda c, s, n, _blocks=_blocks: _densenet(_blocks, c, n))


@register("googlenet", paper="Szegedy et al. 2015, Going deeper with convolutions",
          summary="torchvision GoogLeNet (Inception v1) with a 3x3 stride-1 stem, no stem pools")
def googlenet(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    model = GoogLeNet(num_classes=num_classes, aux_logits=False,
                                   transform_input=False, init_weights=True)
    model.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, padding=1)
    model.maxpool1 = nn.Identity()
    model.maxpool2 = nn.Identity()
    return model
