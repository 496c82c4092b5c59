"""Evaluation and analysis of adaptive-length tokenizers (the commands `alit eval`, `analyze`, `probe`,
`visualize`).

  inputs        the checkpoint and the images an evaluation feeds the model (protocols)
  metrics       the metrics that need a network (LPIPS, rFID); the arithmetic ones are `alit.scoring`
  sweep         `alit eval`: every length and the adaptive mode, scored
  sweep_report  what `alit eval` writes: results.json / .csv / index.html
  analysis      `alit analyze`: tokens against image complexity, and in- vs out-of-distribution sets
  probe         `alit probe`: a linear classifier on frozen latents at each length
  visualize     `alit visualize`: the decoder's attention from each latent token over the image grid
  report        the static HTML pages and matplotlib figures they all write
"""
