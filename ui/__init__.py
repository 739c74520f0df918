"""The GAEA chat in the browser (Gradio). No model code: it calls gaea.Assistant."""
