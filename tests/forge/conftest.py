from tests.forge.support import clear_forge_faults_fixture, forge_fixture

__all__ = ["clear_forge_faults_fixture", "forge_fixture"]
