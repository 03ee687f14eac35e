"""fsm_exec.journal."""
