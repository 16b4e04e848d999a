"""The generator network, its pretrained encoder and its weights files."""

# Side lengths the generator takes: multiples of its encoder's total stride (2^5). Kept here,
# free of torch, so the pipeline can size frames without loading the network's code.
SIZE_MULTIPLE = 32
