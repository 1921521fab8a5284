"""UNets, their traced layers and their sampling (torch and diffusers live here)."""
