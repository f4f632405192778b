"""Next-ViT models, configs, the registry and checkpoint loading."""

from edgevit.models.checkpoint import load_weights, read_state_dict, save_weights
from edgevit.models.nextvit import NextViT, NextViTConfig, create_model, get_config, list_models, register_config
from edgevit.models.random_init import randomize_

__all__ = ["NextViT", "NextViTConfig", "create_model", "get_config", "list_models", "register_config",
           "load_weights", "read_state_dict", "save_weights", "randomize_"]
