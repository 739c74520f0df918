"""Benchmark evaluation: GAEA-Bench QA (LLM judge or judge-free), distance accuracy, city / country accuracy.

A task is data plus two small functions, as in lmms-eval: `process_results(doc, output) -> payload` turns
one model answer into a scored sample, and `aggregate(payloads)` turns the samples into the reported scores.
"""
