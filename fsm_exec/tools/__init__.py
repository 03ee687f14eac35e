"""fsm_exec.tools."""
