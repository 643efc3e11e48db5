"""Hooks."""
from .mtkd_rl_agent_hook import MTKDRLAgentHook

__all__ = ['MTKDRLAgentHook']
