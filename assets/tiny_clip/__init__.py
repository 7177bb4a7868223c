"""The built-in tiny CLIP: config, checkpoint, label list, data generator and training script."""
