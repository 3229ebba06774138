"""tn_peft: tensor-network adapters for parameter-efficient fine-tuning."""
__version__ = "0.1.0"
