//! Nexmark (placeholder until written below).
