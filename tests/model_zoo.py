"""A plug-in of model factories for the `model` space tests, loaded with `sparsenas --allow-import model_zoo`.

ResNet-18 (He et al. 2016: basic blocks [2, 2, 2, 2], a 1×1 projection where the shape changes) and MobileNetV2
(Sandler et al. 2018: inverted residuals t, c, n, s = the paper's table 2) written from the papers' block
structure, with a width factor and a CIFAR-style 3×3 stem for small inputs (no torchvision: it does not import
against the CPU torch wheel here)."""
import torch
from torch import nn
import torch.nn.functional as F


def small_cnn(input_shape, num_classes, width=8):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 32), nn.ReLU(), nn.Linear(32, num_classes))


class MLP(nn.Module):
    def __init__(self, in_features, num_classes, hidden=32):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(in_features, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.flatten(1)
        return self.head(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))))


def mlp(input_shape, num_classes, hidden=32):
    size = 1
    for d in input_shape:
        size *= d
    return MLP(size, num_classes, hidden)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks, in_channels, num_classes, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c_in, c_out, 2 if i > 0 and j == 0 else 1))
                c_in = c_out
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet18(input_shape, num_classes, width=64):
    return ResNet([2, 2, 2, 2], input_shape[0], num_classes, width)


def conv_bn_relu(c_in, c_out, kernel, stride, groups=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn_relu(c_in, hidden, 1, 1)] if expand != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),  # depthwise
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]  # linear bottleneck
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


# t (expansion), c (channels), n (repeats), s (stride of the first) — MobileNetV2's table 2
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]


def mobilenet_v2(input_shape, num_classes, width_mult=1.0, last=1280):
    def ch(c):
        return max(8, int(c * width_mult + 4) // 8 * 8)

    c_in = ch(32)
    features = [conv_bn_relu(input_shape[0], c_in, 3, 1)]  # stride 1 for small inputs
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            features.append(InvertedResidual(c_in, ch(c), s if i == 0 else 1, t))
            c_in = ch(c)
    features.append(conv_bn_relu(c_in, last, 1, 1))
    model = nn.Sequential()
    model.features = nn.Sequential(*features)
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
    return model


def broken(input_shape, num_classes):
    raise RuntimeError("this factory\nalways fails")
