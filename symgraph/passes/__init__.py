"""Graph-to-graph optimization passes; pipeline.py holds their order and the levels O0..O3."""
