"""SyMat (Luo, Liu & Ji, "Towards Symmetry-Aware Generation of Periodic Materials", NeurIPS 2023) for crystalgen."""
