"""The course's stores (session_management.stores) beyond the contract."""
