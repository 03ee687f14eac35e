"""fsm_exec.core."""
