"""Training-data creation (the paper's trajectory data): task conversion (convert), the teacher LLM runner
(teacher), intent reconstruction (intent), fact location (locator), the answer step (answer), trajectories combined
into short and long samples (combine), the authors' released data (authors_data), the embedded demo data
(demo_data) and real questions mixed in (real_questions)."""
