"""Generator networks (one registry builds each by name), their encoders and weights files.

``registry.build_generator(config)`` makes any of them; ``weights`` saves and loads them with
the config that rebuilds them. This file stays free of torch: the pipeline imports it.
"""

# Side lengths the generator takes: multiples of its encoder's total stride (2^5). Kept here,
# free of torch, so the pipeline can size frames without loading the network's code.
SIZE_MULTIPLE = 32
