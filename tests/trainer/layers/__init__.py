"""Tests of trainer/layers."""
