"""The starter set: the models committed in git, so that a fresh clone serves real predictions
with no training, no GPU and no network. Everything else in `models/` is made by
`make train-all && make export-all` and stays out of git (.gitignore lists the same set; a
test keeps the two in step)."""

STARTER_SET = (
    # the whole MNIST matrix: small (under 1 MB each)
    "cnn-mnist", "lenet5-mnist", "inception-mnist", "residual-mnist", "preact-residual-mnist",
    # CIFAR-10: LeNet-5 and Network-in-Network, the matrix's nets under 5 MB in fp32
    "lenet5-cifar10", "nin-cifar10",
    # INT8 variants that passed the int8 gate (export/int8_gate.py). The big nets come only as
    # these: their fp32 models (AlexNet 30 MB, VGG16 59 MB, ResNet18 and PreAct-ResNet18 45 MB each) are made by `make export-all`.
    "nin-cifar10-int8", "alexnet-cifar10-int8", "vgg16-cifar10-int8", "resnet18-cifar10-int8",
    "preact-resnet18-cifar10-int8",
)
GIT_ONNX_BUDGET_BYTES = 60_000_000  # all the starter set's ONNX files together
