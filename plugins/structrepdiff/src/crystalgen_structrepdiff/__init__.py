"""StructRepDiff for crystalgen: diffusion over EAD structure representations, decoded by gradient-based
reconstruction (representation-space diffusion models for generating periodic materials). See docs/structrepdiff.md."""
