"""The training machinery: the loop (``trainer``) and what it owns.

``update`` steps the nets (torch optimizers, or DeepSpeed engines behind the same interface),
``cuda_graphs`` replays whole steps, ``checkpoint`` writes and reads checkpoints atomically and safely,
``ema`` keeps the sampling nets' averages, ``outputs`` writes metrics and sample grids, and
``deepspeed_engines`` builds one engine per net. Methods (``acl_dist.methods``) hold the maths; nothing here
knows a loss formula. Import from the modules (``from acl_dist.training.trainer import Trainer``): this file
imports nothing, so reading a checkpoint does not load the whole loop.
"""
