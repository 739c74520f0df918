"""LoRA / QLoRA supervised fine-tuning of vision-language models on GAEA QA datasets (`gaea finetune`)."""
