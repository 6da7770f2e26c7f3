"""qnoise dashboard: Streamlit pages over qnoise results (see README.md in this folder)."""
