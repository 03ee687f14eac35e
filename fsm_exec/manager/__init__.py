"""fsm_exec.manager."""
