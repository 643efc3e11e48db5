"""Hooks."""
from .mtkd_rl_agent_hook import MTKDRLAgentHook
from .student_export_hook import StudentExportHook

__all__ = ['MTKDRLAgentHook', 'StudentExportHook']
